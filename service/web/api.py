"""Public JSON API, ``/api/v1/``: subscribe to a list, and the proof-of-work challenge.

The subscribe endpoint takes JSON, a urlencoded form and a multipart form. A browser's form
post (it asks for HTML) gets a result page; everything else gets JSON. The answer to a
valid request never depends on whether the address is known: 202 and the same body, always.
The rules live in ``service.signups``; this module only reads the request and answers.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.errors import Refusal
from service.models import MailingList
from service.state import AppRequest
from service.web import cors
from service.web.bodies import read_fields
from service.web.caller import caller
from service.web.negotiation import wants_html
from service.web.refusals import as_json, for_a_reader, headers_for
from service.web.responses import page

__all__ = ["ACCEPTED_BODY", "routes"]

ACCEPTED_BODY = {
    "status": "accepted",
    "message": "Thanks! Please check your inbox and click the link to confirm your subscription.",
}
ACCEPTED_JSON = JSONResponse(ACCEPTED_BODY).body  # the same bytes for every signup


async def subscribe(request: AppRequest) -> Response:
    mailing_list: MailingList | None = None
    try:
        mailing_list = await cors.allowed_list(request)
        fields = await read_fields(request)
        await request.state["signups"].take(mailing_list, fields, caller(request))
    except Refusal as refusal:
        return _answer(request, mailing_list, refusal)
    return _answer(request, mailing_list, None)


def _answer(
    request: AppRequest, mailing_list: MailingList | None, refusal: Refusal | None
) -> Response:
    """202 or the refusal: JSON, or the result page for a browser's form post."""
    # Only a page on a site the list allows may read the answer.
    headers = cors.response_headers(request) if mailing_list else dict(cors.REFUSED_HEADERS)
    if isinstance(refusal, cors.OriginRefused):
        mailing_list = refusal.mailing_list
    if mailing_list is None or not wants_html(request):
        if refusal is not None:
            return as_json(refusal, headers)
        return Response(ACCEPTED_JSON, 202, headers, media_type="application/json")
    message = ACCEPTED_BODY["message"]
    if refusal is not None:
        message = for_a_reader(refusal, mailing_list.language)
    return page(
        request,
        "pages/subscribe_result.html",
        {
            "list_name": mailing_list.name,
            "ok": refusal is None,
            "message": message,
            "errors": refusal.fields if refusal is not None else {},
            "back_url": f"/subscribe/{mailing_list.slug}" if refusal is not None else "",
        },
        status=202 if refusal is None else refusal.status,
        headers=headers_for(refusal, headers) if refusal is not None else headers,
        language=mailing_list.language,
    )


async def challenge(request: AppRequest) -> Response:
    """A fresh proof-of-work challenge for the list, good for one signup until it expires."""
    try:
        mailing_list = await cors.allowed_list(request)
    except Refusal as refusal:
        return as_json(refusal, cors.REFUSED_HEADERS)
    asked = await request.state["signups"].challenge(mailing_list, caller(request))
    body = {
        "challenge": asked.challenge.text,
        "difficulty": asked.challenge.difficulty,
        "expires_in": request.state["challenges"].lifetime,
        # The list asks every signup for one, or is taking signups too fast right now.
        "required": asked.required,
        # When the box showed its form: a signup sent back too soon must pay the work.
        "form_stamp": request.state["stamps"].make(mailing_list.slug),
    }
    headers = {**cors.response_headers(request), "Cache-Control": "no-store"}
    return JSONResponse(body, headers=headers)


async def preflight(request: AppRequest) -> Response:
    try:
        await cors.allowed_list(request)
    except Refusal as refusal:
        return as_json(refusal, cors.REFUSED_HEADERS)
    headers = cors.response_headers(request)
    headers.update(
        {
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400",
        }
    )
    return Response(status_code=204, headers=headers)


routes = [
    Route("/api/v1/lists/{slug}/subscriptions", subscribe, methods=["POST"]),
    Route("/api/v1/lists/{slug}/subscriptions", preflight, methods=["OPTIONS"]),
    Route("/api/v1/lists/{slug}/challenge", challenge, methods=["GET"]),
]
