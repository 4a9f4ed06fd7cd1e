"""Response helpers shared by the endpoint modules, and the error handlers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from service.i18n import negotiate, texts
from service.state import AppRequest
from service.web.middleware import csp_nonce, redact_path

__all__ = ["TOKEN_PAGE_HEADERS", "api_error", "exception_handlers", "page"]

log = logging.getLogger(__name__)

# Pages reached through an emailed link: the token in the URL must not leak onward,
# be cached by a shared proxy, or be indexed.
TOKEN_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}

_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
}


def api_error(
    status: int,
    message: str,
    *,
    fields: dict[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code or _CODES.get(status, "error"), "message": message}
    if fields:
        body["fields"] = fields
    return JSONResponse(body, status_code=status, headers=headers)


def page(
    request: AppRequest,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    language: str | None = None,
) -> HTMLResponse:
    """A page in ``language``, or in the reader's preferred one when no list decides.

    Templates put ``csp_nonce`` on their ``<style>`` and ``<script>`` tags: the page's
    Content-Security-Policy lets nothing else run or style it.
    """
    lang = language or negotiate(request.headers.get("accept-language"))
    templates = request.state["templates"]
    return templates.TemplateResponse(
        cast(Request, request),
        template,
        {"lang": lang, "t": texts(lang), "csp_nonce": csp_nonce(request.scope), **(context or {})},
        status_code=status,
        headers=headers,
    )


def _wants_json(request: AppRequest) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get(
        "accept", ""
    )


async def _http_exception(plain_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    request = cast(AppRequest, plain_request)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404 and message == "Not Found":
        message = f"Nothing here: {request.url.path}"
    if exc.status_code == 405:
        message = f"{request.method} is not allowed here."
    if _wants_json(request):
        return api_error(exc.status_code, message, headers=exc.headers)
    return page(
        request,
        "pages/error.html",
        {"status": exc.status_code, "message": message},
        status=exc.status_code,
        headers=exc.headers,
    )


async def _server_error(plain_request: Request, exc: Exception) -> Response:
    request = cast(AppRequest, plain_request)
    log.error(
        "unhandled error on %s %s", request.method, redact_path(request.url.path), exc_info=exc
    )
    message = "Something went wrong on our side. Please try again in a moment."
    if _wants_json(request):
        return api_error(500, message)
    return HTMLResponse(f"<!DOCTYPE html><title>Error</title><p>{message}</p>", status_code=500)


exception_handlers: dict[Any, Any] = {HTTPException: _http_exception, Exception: _server_error}
