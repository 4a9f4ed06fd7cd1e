"""``GET /metrics`` for Prometheus.

Counts by list name who runs which lists and how big they are, and how soon a counter
moves after a signup tells whether the address was new, so the endpoint is not public:
with ``NEWSLETTER_METRICS_TOKEN`` set it asks every client for that bearer token; without,
it answers only loopback clients (a scraper on the same machine). A private network is
not enough: anyone else on it could watch the counters.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.metrics import CONTENT_TYPE
from service.state import AppRequest

__all__ = ["routes"]


def _loopback(request: AppRequest) -> bool:
    try:
        address = ipaddress.ip_address(request.client.host if request.client else "")
    except ValueError:
        return False
    # A reverse proxy on the same machine makes every client look local: a request that
    # names the client it was forwarded for is not a scraper beside the service. (With
    # NEWSLETTER_TRUSTED_PROXIES, the client is that forwarded address already.)
    forwarded = "forwarded" in request.headers or "x-forwarded-for" in request.headers
    return address.is_loopback and not forwarded


def _allowed(request: AppRequest) -> bool:
    token = request.state["settings"].metrics_token
    if token:
        sent = request.headers.get("authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {token.reveal()}".encode())
    return _loopback(request)


async def metrics(request: AppRequest) -> Response:
    if not _allowed(request):
        return PlainTextResponse(
            "Metrics need NEWSLETTER_METRICS_TOKEN as a bearer token; without one set, they "
            "answer only clients on this machine (loopback).",
            status_code=403,
        )
    body = await request.state["metrics"].render(request.state["db"])
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


routes = [Route("/metrics", metrics, methods=["GET"])]
