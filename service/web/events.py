"""``POST /api/v1/lists/{slug}/events``: what the subscribe box did, counted on arrival.

The box sends ``e`` (shown, dismissed, submitted), ``p`` (the page's path), ``v`` (the
copy's variant, empty for the list's own) and ``d`` (phone or larger) with
``navigator.sendBeacon``: a urlencoded body, no cookie. The answer is 204 and counts one;
anything wrong (unknown list, a site the list does not allow, a malformed body, a path too
long) is a 4xx that says what, and counts nothing. A request that says Do Not Track or
Global Privacy Control counts nothing either. Nothing of the request is kept but the count.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.routing import Route

from service.box_counts import list_variants, parse_event
from service.errors import Refusal
from service.state import AppRequest
from service.web import cors
from service.web.refusals import api_error, as_json

__all__ = ["MAX_EVENT_BODY", "routes"]

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
    body = await request.body()
    if len(body) > MAX_EVENT_BODY:
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
