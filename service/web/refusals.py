"""The one renderer of refusals: a JSON body for programs, a page for people.

Every endpoint raises (or hands over) a ``service.errors.Refusal``; this module is the only
place that turns one into a response. The JSON body is always
``{"error": code, "message": text, "fields": {...}}`` (fields only when some are at fault),
with ``Retry-After`` when waiting helps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, cast

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from service.challenges import ChallengeRefused
from service.errors import Refusal
from service.i18n import texts
from service.state import AppRequest
from service.web.middleware import redact_path
from service.web.negotiation import wants_page
from service.web.responses import page

__all__ = [
    "api_error",
    "as_json",
    "exception_handlers",
    "for_a_reader",
    "headers_for",
    "render",
    "retry_after_header",
]

log = logging.getLogger(__name__)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def headers_for(refusal: Refusal, headers: Mapping[str, str] | None = None) -> dict[str, str]:
    merged = dict(headers or {})
    if refusal.retry_after is not None:
        merged["Retry-After"] = retry_after_header(refusal.retry_after)
    return merged


def as_json(refusal: Refusal, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": refusal.code, "message": refusal.message}
    if refusal.fields:
        body["fields"] = refusal.fields
    return JSONResponse(body, status_code=refusal.status, headers=headers_for(refusal, headers))


def api_error(
    status: int,
    message: str,
    *,
    fields: dict[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    """A JSON refusal made on the spot, for answers no rule module raises."""
    return as_json(Refusal(message, status=status, code=code, fields=fields), headers)


def for_a_reader(refusal: Refusal, language: str) -> str:
    """The refusal in a reader's words, where its message is a program's: a proof of work a
    form could not send is explained, in the list's language."""
    if not isinstance(refusal, ChallengeRefused):
        return refusal.message
    # A form post comes from the hosted page: without a solution, its script did not run.
    why = "pow_retry"  # also for a stamp too old or used already: the page must be reloaded
    if refusal.missing and refusal.suspect in {"", "surge"}:  # asked of every signup
        why = "needs_javascript"
    elif refusal.missing and refusal.suspect in {"no-stamp", "bad-stamp", "too-fast"}:
        why = "too_fast"
    return texts(language)[why]


def render(
    request: AppRequest, refusal: Refusal, headers: Mapping[str, str] | None = None
) -> Response:
    """JSON, or the error page for a person's browser."""
    if not wants_page(request):
        return as_json(refusal, headers)
    return page(
        request,
        "pages/error.html",
        {"status": refusal.status, "message": refusal.message},
        status=refusal.status,
        headers=headers_for(refusal, headers),
    )


async def _refusal(request: Request, exc: Exception) -> Response:
    """An endpoint that raises a Refusal needs no code of its own to answer it."""
    assert isinstance(exc, Refusal)
    return render(cast(AppRequest, request), exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, wrong method): rendered like ours."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404 and message == "Not Found":
        message = f"Nothing here: {request.url.path}"
    if exc.status_code == 405:
        message = f"{request.method} is not allowed here."
    refusal = Refusal(message, status=exc.status_code)
    return render(cast(AppRequest, request), refusal, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error(
        "unhandled error on %s %s", request.method, redact_path(request.url.path), exc_info=exc
    )
    message = "Something went wrong on our side. Please try again in a moment."
    if not wants_page(request):
        return JSONResponse({"error": "internal_error", "message": message}, status_code=500)
    return HTMLResponse(f"<!DOCTYPE html><title>Error</title><p>{message}</p>", status_code=500)


exception_handlers: dict[Any, Any] = {
    Refusal: _refusal,
    HTTPException: _http_exception,
    Exception: _server_error,
}
