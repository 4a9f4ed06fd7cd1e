"""The embeddable script and the one request it makes: the list's box settings.

``/widget.js`` is read once at start-up and kept with its gzip form and hashes. The plain
URL (what site owners paste) is cached briefly and revalidated with a strong ETag; the
versioned URL (``/widget.js?v=HASH``) never changes, so it is cached for a year.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.i18n import LANGUAGES, texts
from service.state import AppRequest
from service.web.assets import widget_asset
from service.web.cors import origin_allowed
from service.web.refusals import api_error
from service.widget_settings import WIDGET_TEXTS, effective

__all__ = ["routes"]

SHORT_CACHE = "public, max-age=300"
LONG_CACHE = "public, max-age=31536000, immutable"


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in {"gzip", "*"} and params.replace(" ", "") not in {"q=0", "q=0.0"}:
            return True
    return False


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return etag in {tag.strip().removeprefix("W/") for tag in header.split(",")}


async def widget_js(request: Request) -> Response:
    asset = widget_asset()
    compressed = _accepts_gzip(request)
    etag = f'"{asset.version}{"-gz" if compressed else ""}"'
    headers = {
        "ETag": etag,
        "Cache-Control": LONG_CACHE
        if request.query_params.get("v") == asset.version
        else SHORT_CACHE,
        "Vary": "Accept-Encoding",
        # A public script: any page may load it, including with crossorigin="anonymous".
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if _etag_matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    if compressed:
        headers["Content-Encoding"] = "gzip"
    body = asset.gzipped if compressed else asset.body
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


async def widget_config(request: AppRequest) -> Response:
    slug = request.path_params["slug"]
    mailing_list = await request.state["lists"].get(slug)
    headers = {"Access-Control-Allow-Origin": "*", "Vary": "Origin"}
    if mailing_list is None:
        return api_error(404, f"There is no list {slug!r}.", headers=headers)
    language = request.query_params.get("lang", mailing_list.language)
    if language not in LANGUAGES:
        language = mailing_list.language
    words = texts(language)
    settings = effective(mailing_list, language)
    base_url = request.state["settings"].base_url
    body = {
        "list": mailing_list.slug,
        "name": mailing_list.name,
        "language": language,
        "endpoint": f"{base_url}/api/v1/lists/{mailing_list.slug}/subscriptions",
        "origin_allowed": origin_allowed(request, mailing_list),
        "settings": settings,
        "texts": {key: words[key] for key in WIDGET_TEXTS},
    }
    headers["Cache-Control"] = "public, max-age=60"
    return JSONResponse(body, headers=headers)


routes = [
    Route("/widget.js", widget_js, methods=["GET", "HEAD"]),
    Route("/api/v1/lists/{slug}/widget", widget_config, methods=["GET"]),
]
