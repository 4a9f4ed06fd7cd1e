"""Public JSON API, ``/api/v1/``: subscribe to a list.

The same endpoint takes JSON, a urlencoded form and a multipart form. A browser's form post
(it asks for HTML) gets a result page; everything else gets JSON. The answer to a valid
request never depends on whether the address is known: 202 and the same body, always.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service import bots
from service.challenges import ChallengeRefused, spend
from service.i18n import texts
from service.intake import Refused
from service.limits import retry_after
from service.models import MailingList
from service.state import AppRequest
from service.subscriptions import RequestOrigin
from service.validation import FieldErrors, validate_signup
from service.web.bodies import BadBody, parse_json_object
from service.web.responses import api_error, page
from service.widget_settings import effective, setting

__all__ = ["ACCEPTED_BODY", "POW_REFUSED", "routes"]

log = logging.getLogger(__name__)

ACCEPTED_BODY = {
    "status": "accepted",
    "message": "Thanks! Please check your inbox and click the link to confirm your subscription.",
}
ACCEPTED_JSON = JSONResponse(ACCEPTED_BODY).body  # the same bytes for every signup
POW_REFUSED = "proof_of_work"  # the error code of a missing, used or wrong proof of work
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
MAX_FIELDS = 20


def _media_type(request: AppRequest) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _wants_html(request: AppRequest) -> bool:
    accept = request.headers.get("accept", "")
    return _media_type(request) in FORM_TYPES and "text/html" in accept


async def read_fields(request: AppRequest) -> dict[str, Any]:
    media_type = _media_type(request)
    if media_type == "application/json" or media_type.endswith("+json"):
        return parse_json_object(await request.body())
    if media_type in FORM_TYPES:
        # Files are taken only to be refused by name below (the body limit bounds them).
        fields: dict[str, Any] = {}
        async with request.form(max_files=MAX_FIELDS, max_fields=MAX_FIELDS) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    raise BadBody(422, f"The field {key!r} must be text, not a file.")
                if key in fields:
                    raise BadBody(422, f"The field {key!r} was sent more than once.")
                fields[key] = value
        return fields
    shown = media_type or "none"
    raise BadBody(
        415,
        f"Unsupported Content-Type ({shown}): send application/json, "
        "application/x-www-form-urlencoded or multipart/form-data.",
    )


def own_origin(base_url: str) -> str:
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()


def origin_allowed(request: AppRequest, mailing_list: MailingList) -> bool:
    """No Origin header: not a browser's cross-site call, so CORS has nothing to say."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    origin = origin.lower()
    return origin == own_origin(request.state["settings"].base_url) or (
        origin in mailing_list.allowed_origins
    )


def cors_headers(request: AppRequest) -> dict[str, str]:
    origin = request.headers.get("origin")
    headers = {"Vary": "Origin"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def _origin_refused(request: AppRequest, mailing_list: MailingList) -> Response:
    origin = request.headers.get("origin", "")
    log.warning(
        "refused signup for list %s from origin %s (not in its allowed origins)",
        mailing_list.slug,
        origin[:200],
    )
    if _wants_html(request):
        message = f"This site ({origin[:200]}) is not allowed to sign people up to this list."
        return _result_page(request, mailing_list, 403, message, {})
    return api_error(
        403,
        f"This site ({origin[:200]}) is not allowed to sign people up to the "
        f"list {mailing_list.slug!r}. Add it to the list's allowed origins.",
        headers={"Vary": "Origin"},
    )


async def _list_for(request: AppRequest) -> MailingList | Response:
    """The list in the path, if it exists and the calling page may use it; else the answer
    that says why not."""
    slug = request.path_params["slug"]
    mailing_list = await request.state["lists"].get(slug)
    if mailing_list is None:
        return api_error(404, f"There is no list {slug!r}.", headers={"Vary": "Origin"})
    if not origin_allowed(request, mailing_list):
        return _origin_refused(request, mailing_list)
    return mailing_list


async def subscribe(request: AppRequest) -> Response:
    state = request.state
    mailing_list = await _list_for(request)
    if isinstance(mailing_list, Response):
        return mailing_list
    headers = cors_headers(request)
    html = _wants_html(request)
    try:
        fields = await read_fields(request)
        signup = validate_signup(
            fields, check_deliverability=state["settings"].check_deliverability
        )
    except BadBody as exc:
        if html:
            return _result_page(request, mailing_list, exc.status, exc.message, {})
        return api_error(exc.status, exc.message, headers=headers)
    except FieldErrors as exc:
        message = "Please correct the marked fields."
        if html:
            return _result_page(request, mailing_list, 422, message, exc.errors)
        return api_error(422, message, fields=exc.errors, headers=headers)

    verdict = bots.verdict(
        fields, mailing_list.slug, state["stamps"], state["settings"].min_fill_time
    )
    ticked = str(fields.get("consent", "")).lower() in {"yes", "true", "on", "1"}
    if not verdict and setting(mailing_list, "consentCheckbox") and not ticked:
        errors = {"consent": "must be given: this list asks readers to tick the consent box"}
        if html:
            return _result_page(request, mailing_list, 422, "Consent is required.", errors)
        return api_error(422, "Please correct the marked fields.", fields=errors, headers=headers)

    if setting(mailing_list, "proofOfWork"):
        try:
            proof = state["challenges"].check(
                mailing_list.slug, fields.get("pow_challenge"), fields.get("pow_solution")
            )
            await spend(state["db"], proof)
        except ChallengeRefused as exc:
            missing = not fields.get("pow_solution")
            return _pow_refused(request, mailing_list, html, headers, str(exc), missing)

    client = request.client.host if request.client else None
    origin = RequestOrigin(ip=client, user_agent=request.headers.get("user-agent"))
    # The same work for every address and every verdict: what differs happens later.
    refused = await state["intake"].take(mailing_list, signup, origin, verdict=verdict)
    if refused is not None:
        return _too_many(request, mailing_list, html, headers, refused)
    if verdict:
        log.info("signup on list %s looks like a bot's (%s); dropped", mailing_list.slug, verdict)
        state["metrics"].signups_dropped.labels(verdict).inc()
    else:
        state["metrics"].subscribes.labels(mailing_list.slug).inc()
    return _accepted(request, mailing_list, html, headers)


def _pow_refused(
    request: AppRequest,
    mailing_list: MailingList,
    html: bool,
    headers: dict[str, str],
    message: str,
    missing: bool,
) -> Response:
    log.info("signup on list %s refused: %s", mailing_list.slug, message)
    if html:
        # A form post comes from the hosted page: without a solution, its script did not run.
        message = texts(mailing_list.language)["needs_javascript" if missing else "pow_retry"]
        return _result_page(request, mailing_list, 403, message, {})
    return api_error(403, message, headers=headers, code=POW_REFUSED)


def _too_many(
    request: AppRequest,
    mailing_list: MailingList,
    html: bool,
    headers: dict[str, str],
    refused: Refused,
) -> Response:
    minutes = max(1, round(refused.retry_after / 60))
    who = "from your network" if refused.scope == "client" else "to this list"
    message = (
        f"Too many signups {who} right now. Please try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}."
    )
    headers = {**headers, "Retry-After": retry_after(refused.retry_after)}
    if html:
        response = _result_page(request, mailing_list, 429, message, {})
        response.headers.update(headers)
        return response
    return api_error(429, message, headers=headers)


def _accepted(
    request: AppRequest, mailing_list: MailingList, html: bool, headers: dict[str, str]
) -> Response:
    if html:
        return _result_page(request, mailing_list, 202, ACCEPTED_BODY["message"], {})
    return Response(ACCEPTED_JSON, 202, headers, media_type="application/json")


def _result_page(
    request: AppRequest,
    mailing_list: MailingList,
    status: int,
    message: str,
    errors: dict[str, str],
) -> Response:
    return page(
        request,
        "pages/subscribe_result.html",
        {
            "list_name": mailing_list.name,
            "ok": status == 202,
            "message": message,
            "errors": errors,
            "back_url": f"/subscribe/{mailing_list.slug}",
        },
        status=status,
        language=mailing_list.language,
    )


async def challenge(request: AppRequest) -> Response:
    """A fresh proof-of-work challenge for the list, good for one signup until it expires."""
    mailing_list = await _list_for(request)
    if isinstance(mailing_list, Response):
        return mailing_list
    made = request.state["challenges"].make(mailing_list.slug)
    body = {
        "challenge": made.text,
        "difficulty": made.difficulty,
        "expires_in": request.state["challenges"].lifetime,
        "required": bool(effective(mailing_list)["proofOfWork"]),
    }
    headers = {**cors_headers(request), "Cache-Control": "no-store"}
    return JSONResponse(body, headers=headers)


async def preflight(request: AppRequest) -> Response:
    mailing_list = await _list_for(request)
    if isinstance(mailing_list, Response):
        return mailing_list
    headers = cors_headers(request)
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
