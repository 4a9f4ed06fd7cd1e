"""``GET /metrics`` for Prometheus.

Counts by list name who runs which lists and how big they are, so the endpoint is not
public: with ``NEWSLETTER_METRICS_TOKEN`` set it asks for that bearer token; without, it
answers only clients on loopback or private networks (a scraper beside the service).
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.metrics import CONTENT_TYPE
from service.state import AppRequest

__all__ = ["routes"]


def _private(host: str | None) -> bool:
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def _allowed(request: AppRequest) -> bool:
    token = request.state["settings"].metrics_token
    if token:
        sent = request.headers.get("authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {token.reveal()}".encode())
    return _private(request.client.host if request.client else None)


async def metrics(request: AppRequest) -> Response:
    if not _allowed(request):
        return PlainTextResponse(
            "Metrics need NEWSLETTER_METRICS_TOKEN as a bearer token, or a private network.",
            status_code=403,
        )
    body = await request.state["metrics"].render(request.state["db"])
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


routes = [Route("/metrics", metrics, methods=["GET"])]
