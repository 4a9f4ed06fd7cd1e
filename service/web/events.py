"""``POST /api/v1/lists/{slug}/events``: what the subscribe box did, counted on arrival.

The box sends ``e`` (shown, dismissed, submitted), ``p`` (the page's path), ``v`` (the
copy's variant, empty for the list's own) and ``d`` (phone or larger) with
``navigator.sendBeacon``: a urlencoded body, no cookie. The answer is 204 and counts one;
anything wrong (unknown list, a site the list does not allow, a malformed body, a path too
long) is a 4xx that says what, and counts nothing. A request that says Do Not Track or
Global Privacy Control counts nothing either. Nothing of the request is kept but the count.

Every page view with the box sends one or two of these, so they take a short way in:
`BoxEventsLane` answers them outside the middleware stack and the router (no access log
line, no latency sample per beacon), from the raw ASGI request, with the same security
headers; bench/events_bench.py holds it to 0.8 of a bare Starlette endpoint.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, unquote_plus

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.box_counts import list_variants, parse_event
from service.state import AppState
from service.web.cors import own_origin
from service.web.middleware import HSTS, PERMISSIONS_POLICY, RESOURCE_CSP
from service.web.refusals import api_error

__all__ = ["MAX_EVENT_BODY", "BoxEventsLane", "routes"]

log = logging.getLogger(__name__)

MAX_EVENT_BODY = 1024
MAX_FIELDS = 8
FORMS = {"application/x-www-form-urlencoded", "text/plain"}
EVENTS_PATH = re.compile(r"^/api/v1/lists/([^/]+)/events$")
SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", PERMISSIONS_POLICY.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy", RESOURCE_CSP.encode()),
]


class Refused(Exception):
    def __init__(self, status: int, message: str, *, readable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.readable = readable  # whether the calling page may read the answer


def _fields(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(422, "Not counted: the body is not UTF-8.") from None
    fields: dict[str, str] = {}
    if not text:
        return fields
    parts = text.split("&")
    if len(parts) > MAX_FIELDS:
        raise Refused(422, f"Not counted: at most {MAX_FIELDS} fields.")
    for part in parts:
        name, _, value = part.partition("=")
        fields[name] = unquote_plus(value) if "%" in value or "+" in value else value
    return fields


async def _count(
    state: AppState, slug: str, headers: dict[bytes, bytes], body: bytes | None
) -> None:
    """Count the event, or raise `Refused` saying what is wrong."""
    mailing_list = await state["lists"].get(slug)
    if mailing_list is None:
        raise Refused(404, f"There is no list {slug!r}.", readable=False)
    origin = headers.get(b"origin")
    if origin is not None:
        caller = origin.decode("latin-1").lower()
        if caller not in mailing_list.allowed_origins and caller != own_origin(
            state["settings"].base_url
        ):
            raise Refused(403, f"{caller} is not allowed to use the list {slug!r}.", readable=False)
    kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
    if kind not in FORMS:
        raise Refused(415, "Send the event as a urlencoded form (e, p, v, d).")
    if body is None:
        raise Refused(413, f"An event is at most {MAX_EVENT_BODY} bytes.")
    try:
        event, where = parse_event(_fields(body), list_variants(mailing_list))
    except ValueError as exc:
        raise Refused(422, f"Not counted: {exc}") from None
    if headers.get(b"dnt") != b"1" and headers.get(b"sec-gpc") != b"1":
        state["box_counter"].add(mailing_list.id, event, where)


async def _read(receive: Receive, declared: bytes | None) -> bytes | None:
    """The body, or None past ``MAX_EVENT_BODY`` (read no further)."""
    if declared is not None and declared.isdigit() and int(declared) > MAX_EVENT_BODY:
        return None
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += bytes(message.get("body", b""))
        if len(body) > MAX_EVENT_BODY:
            return None
        if not message.get("more_body", False):
            return body


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
        headers = {name.lower(): value for name, value in scope["headers"]}
        answer = [*SECURITY, (b"vary", b"Origin")]
        if scope["state"]["settings"].base_url.startswith("https://"):
            answer.append((b"strict-transport-security", HSTS.encode()))
        origin = headers.get(b"origin")
        try:
            body = await _read(receive, headers.get(b"content-length"))
            await _count(scope["state"], unquote(match[1]), headers, body)
        except Refused as refused:
            if origin is not None and refused.readable:
                answer.append((b"access-control-allow-origin", origin))
            response: Response = api_error(refused.status, refused.message)
            response.raw_headers.extend(answer)
            await response(scope, receive, send)
            return
        except Exception:
            log.exception("box event not counted")
            await api_error(500, "The event could not be counted.")(scope, receive, send)
            return
        if origin is not None:
            answer.append((b"access-control-allow-origin", origin))
        start: Message = {"type": "http.response.start", "status": 204, "headers": answer}
        await send(start)
        await send({"type": "http.response.body", "body": b""})


async def _not_here(request: Request) -> Response:  # pragma: no cover - the lane answers
    return api_error(500, "The event could not be counted.")


# The lane answers every POST; the route is here so that other methods get their 405.
routes = [Route("/api/v1/lists/{slug}/events", _not_here, methods=["POST"])]
