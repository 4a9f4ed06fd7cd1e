"""The widget's parts, ``/widget/NAME.js``: ES modules the box imports only where a list
uses them (the proof-of-work solver, the optional fields, the scroll and exit triggers,
the answers to a refused signup), so that a plain list's page loads none of them.

widget.js asks for each by the parts' version (``?v=HASH``), so that URL is cached for a
year.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.web.assets import parts_version, widget_part
from service.web.refusals import api_error

__all__ = ["routes"]

LONG_CACHE = "public, max-age=31536000, immutable"
SHORT_CACHE = "public, max-age=300"


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in {"gzip", "*"} and params.replace(" ", "") not in {"q=0", "q=0.0"}:
            return True
    return False


async def widget_part_js(request: Request) -> Response:
    name = request.path_params["name"]
    asset = widget_part(name)
    # A public script that any page may import (modules are fetched with CORS).
    headers = {
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if asset is None:
        return api_error(404, f"There is no widget part {name!r}.", headers=headers)
    headers["Vary"] = "Accept-Encoding"
    headers["ETag"] = f'"{asset.version}"'
    versioned = request.query_params.get("v") == parts_version()
    headers["Cache-Control"] = LONG_CACHE if versioned else SHORT_CACHE
    body = asset.body
    if _accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        headers["ETag"] = f'"{asset.version}-gz"'
        body = asset.gzipped
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


routes = [Route("/widget/{name}.js", widget_part_js, methods=["GET", "HEAD"])]
