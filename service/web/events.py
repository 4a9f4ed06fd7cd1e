"""``POST /api/v1/lists/{slug}/events``: what the subscribe box did, counted on arrival.

The box sends ``e`` (shown, dismissed, submitted), ``p`` (the page's path), ``v`` (the
copy's variant, empty for the list's own) and ``d`` (phone or larger) with
``navigator.sendBeacon``: a urlencoded body, no cookie. The answer is 204 and counts one;
anything wrong (unknown list, a site the list does not allow, a malformed body, a path too
long) is a 4xx that says what, and counts nothing. A request that says Do Not Track or
Global Privacy Control counts nothing either. Nothing of the request is kept but the count.

Every page view with the box sends one or two of these, so they take a short way in:
`BoxEventsLane` answers them outside the middleware stack and the router (no access log
line, no latency sample per beacon), with the same security headers, keeping the request
path near a bare Starlette endpoint's cost (bench/events_bench.py).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.box_counts import list_variants, parse_event
from service.errors import Refusal
from service.state import AppRequest
from service.web import cors
from service.web.middleware import PERMISSIONS_POLICY, RESOURCE_CSP
from service.web.refusals import api_error, as_json

__all__ = ["MAX_EVENT_BODY", "BoxEventsLane", "routes"]

log = logging.getLogger(__name__)

MAX_EVENT_BODY = 1024
FORMS = {"application/x-www-form-urlencoded", "text/plain"}


async def box_event(request: AppRequest) -> Response:
    try:
        mailing_list = await cors.allowed_list(request)
    except Refusal as refusal:
        return as_json(refusal, cors.REFUSED_HEADERS)
    headers = cors.response_headers(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in FORMS:
        return api_error(415, "Send the event as a urlencoded form (e, p, v, d).", headers=headers)
    body = await _body(request)
    if body is None:
        return api_error(413, f"An event is at most {MAX_EVENT_BODY} bytes.", headers=headers)
    try:
        fields = dict(parse_qsl(body.decode("utf-8"), max_num_fields=8))
        event, where = parse_event(fields, list_variants(mailing_list))
    except (UnicodeDecodeError, ValueError) as exc:
        message = "The body is not UTF-8." if isinstance(exc, UnicodeDecodeError) else str(exc)
        return api_error(422, f"Not counted: {message}", headers=headers)
    if request.headers.get("dnt") != "1" and request.headers.get("sec-gpc") != "1":
        request.state["box_counter"].add(mailing_list.id, event, where)
    return Response(status_code=204, headers=headers)


routes = [Route("/api/v1/lists/{slug}/events", box_event, methods=["POST"])]


async def _body(request: AppRequest) -> bytes | None:
    """The body, or None past ``MAX_EVENT_BODY`` (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_EVENT_BODY:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_EVENT_BODY:
            return None
    return body


EVENTS_PATH = re.compile(r"^/api/v1/lists/([^/]+)/events$")
HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", PERMISSIONS_POLICY),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Content-Security-Policy", RESOURCE_CSP),
]


class BoxEventsLane:
    """The box's events, answered before the middleware stack and the router."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            EVENTS_PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = {"slug": unquote(match[1])}
        try:
            response = await box_event(Request(scope, receive))
        except Exception:
            log.exception("box event not counted")
            response = api_error(500, "The event could not be counted.")
        for name, value in HEADERS:
            response.headers.setdefault(name, value)
        await response(scope, receive, send)
