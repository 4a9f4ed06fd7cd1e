"""A list's welcome email in the admin: the editor with its preview (``/admin/lists/{slug}/
welcome``) and the JSON API (``/api/v1/admin/lists/{slug}/welcome``)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service import welcome
from service.audit import along_with, entry
from service.auth.sessions import Principal
from service.emails import WELCOME
from service.errors import Refusal
from service.lists import get_list
from service.models import MailingList, OutboxMessage, utcnow
from service.state import AppRequest
from service.web.admin.guard import protected
from service.web.admin.render import admin_page
from service.web.bodies import BadBody, parse_json_object
from service.web.params import MAX_ROW_ID

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}
SAMPLE_NAME = "Ada"
# The preview's links name no subscription that can exist (ids stop at 2**31 - 1).
PREVIEW_ID = MAX_ROW_ID + 1


async def _list(request: AppRequest, *, api: bool) -> MailingList:
    slug = request.path_params["slug"]
    found = await get_list(request.state["db"], slug)
    if found is None:
        if api:
            raise Refusal(f"There is no list {slug!r}.", status=404)
        raise HTTPException(404, f"There is no list {slug!r}.")
    return found


def _sample(request: AppRequest, mailing_list: MailingList) -> EmailMessage:
    """The welcome email as a new subscriber would get it."""
    row = OutboxMessage(
        template=WELCOME,
        to_address="reader@example.com",
        subscription_id=PREVIEW_ID,
        payload={"name": SAMPLE_NAME},
        message_id="<preview@example.com>",
        created_at=utcnow(),
    )
    built = request.state["emails"].build(row, mailing_list)
    assert isinstance(built, EmailMessage)  # a welcome is rendered whole (`Emails.build`)
    return built


def _texts(mailing_list: MailingList) -> tuple[str, str]:
    return welcome.custom_text(mailing_list) or ("", "")


def _json(mailing_list: MailingList) -> dict[str, Any]:
    subject, body = _texts(mailing_list)
    return {
        "list": mailing_list.slug,
        "enabled": welcome.enabled(mailing_list),
        "language": mailing_list.language,
        "subject": subject,
        "body": body,
        "texts": (mailing_list.welcome or {}).get("texts") or {},
    }


async def api_welcome(request: AppRequest, principal: Principal) -> Response:
    mailing_list = await _list(request, api=True)
    if request.method == "PUT":
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise BadBody(415, "Send a JSON object with Content-Type: application/json.")
        data = parse_json_object(
            await request.body(), example='{"enabled": true, "subject": "...", "body": "..."}'
        )
        enabled, subject, body = data.get("enabled"), data.get("subject", ""), data.get("body", "")
        if not isinstance(enabled, bool):
            raise BadBody(422, "enabled must be true or false.")
        if not isinstance(subject, str) or not isinstance(body, str):
            raise BadBody(422, "subject and body must be strings.")
        try:
            settings = welcome.validate(
                mailing_list.welcome,
                mailing_list.language,
                on=enabled,
                subject=subject,
                body=body,
            )
        except ValueError as exc:
            raise Refusal(str(exc), status=422) from None
        with along_with(entry(principal.actor, "list.welcome", mailing_list.slug, on=enabled)):
            await welcome.save(request.state["db"], mailing_list.slug, settings)
        request.state["lists"].clear()
        mailing_list = welcome.with_settings(mailing_list, settings)
    return JSONResponse(_json(mailing_list), headers=NO_STORE)


async def welcome_page(request: AppRequest, principal: Principal) -> Response:
    mailing_list = await _list(request, api=False)
    subject, body = _texts(mailing_list)
    on = welcome.enabled(mailing_list)
    error = ""
    if request.method == "POST":
        form = await request.form(max_files=0, max_fields=10)
        on = form.get("enabled") == "on"
        subject, body = str(form.get("subject", "")), str(form.get("body", ""))
        try:
            settings = welcome.validate(
                mailing_list.welcome, mailing_list.language, on=on, subject=subject, body=body
            )
        except ValueError as exc:
            error = str(exc)
        else:
            if form.get("action") == "save":
                with along_with(entry(principal.actor, "list.welcome", mailing_list.slug, on=on)):
                    await welcome.save(request.state["db"], mailing_list.slug, settings)
                request.state["lists"].clear()
                return RedirectResponse(
                    f"/admin/lists/{mailing_list.slug}/welcome?done=saved", status_code=303
                )
            mailing_list = welcome.with_settings(mailing_list, settings)
    sample = _sample(request, mailing_list)
    query = urlencode({"subject": subject, "body": body})
    return admin_page(
        request,
        principal,
        "admin/welcome.html",
        {
            "ml": mailing_list,
            "enabled": on,
            "subject": subject,
            "body": body,
            "error": error,
            "sample_subject": str(sample["Subject"]),
            "preview_url": f"/admin/lists/{mailing_list.slug}/welcome/preview?{query}",
            "sample_name": SAMPLE_NAME,
        },
        section="lists",
        status=422 if error else 200,
    )


async def welcome_preview(request: AppRequest, principal: Principal) -> Response:
    """The email's HTML as sent, framed by the editor: sandboxed, no scripts, its own
    inline styles only (it is our template; the editor's text in it is escaped)."""
    mailing_list = await _list(request, api=False)
    subject = request.query_params.get("subject", "")
    body = request.query_params.get("body", "")
    try:
        settings = welcome.validate(
            mailing_list.welcome, mailing_list.language, on=True, subject=subject, body=body
        )
    except ValueError:
        settings = mailing_list.welcome or {}
    html = _sample(request, welcome.with_settings(mailing_list, settings)).get_body(
        preferencelist=("html",)
    )
    return Response(
        html.get_content() if html is not None else "",
        media_type="text/html",
        headers={
            **NO_STORE,
            "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'",
            "X-Frame-Options": "SAMEORIGIN",
        },
    )


routes = [
    Route("/admin/lists/{slug}/welcome/preview", protected(welcome_preview), methods=["GET"]),
    Route("/admin/lists/{slug}/welcome", protected(welcome_page), methods=["GET", "POST"]),
    Route("/api/v1/admin/lists/{slug}/welcome", protected(api_welcome), methods=["GET", "PUT"]),
]
