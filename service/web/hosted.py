"""The hosted signup page: the box as a plain page, for readers without JavaScript and as a
link to share.

It posts back to itself. A taken signup answers 303 to a result page (a reload shows that
page again; it never posts twice) with a link back to the site the reader came from, if
that site is one the list allows. A refused one shows the form again with what was typed
and what is wrong.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from service.errors import Refusal
from service.models import MailingList
from service.state import AppRequest
from service.web import cors
from service.web.assets import pow_solver
from service.web.bodies import read_fields
from service.web.caller import caller
from service.web.refusals import for_a_reader, headers_for
from service.web.responses import page
from service.widget_settings import effective

__all__ = ["routes"]

KEPT = ("email", "name", "consent")  # what a refused form shows again as typed


def _back(mailing_list: MailingList, url: str | None) -> str:
    """A page on a site the list allows (the reader's way back), else ""."""
    if not url or len(url) > 2048:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return ""
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return url if origin in mailing_list.allowed_origins else ""


async def _list(request: AppRequest) -> MailingList:
    slug = request.path_params["slug"]
    mailing_list = await request.state["lists"].get(slug)
    if mailing_list is None:
        raise HTTPException(404, f"There is no list {slug!r}.")
    return mailing_list


async def _form(
    request: AppRequest,
    mailing_list: MailingList,
    back: str,
    *,
    values: dict[str, Any] | None = None,
    refusal: Refusal | None = None,
    stamp: str | None = None,
) -> Response:
    state = request.state
    settings = effective(mailing_list)
    # Proof of work: the challenge comes with the page and its script solves it, where the
    # list asks for one, wherever a quick reader's signup may be asked for one, and while a
    # flood makes every signup pay (at the level then in force).
    asked = await state["signups"].challenge(mailing_list, caller(request))
    needs_pow = asked.required or state["settings"].min_fill_time > 0
    pow = asked.challenge if needs_pow else None
    message = for_a_reader(refusal, mailing_list.language) if refusal is not None else ""
    return page(
        request,
        "pages/subscribe.html",
        {
            "slug": mailing_list.slug,
            "list_name": mailing_list.name,
            "settings": settings,
            # When the form was shown, signed: a bot posting back at once pays a proof of work.
            "form_stamp": stamp or state["stamps"].make(mailing_list.slug),
            "pow": pow,
            # Our own script, from the package: not escaped, placed in a nonce'd <script>.
            "pow_solver": Markup(pow_solver()) if pow else "",  # noqa: S704 - see above
            "values": values or {},
            "errors": refusal.fields if refusal is not None else {},
            "message": message,
            "back": back,
        },
        status=refusal.status if refusal is not None else 200,
        language=mailing_list.language,
        headers={
            # Under no-referrer, browsers send "Origin: null" with the form's POST; it must
            # carry this service's own origin to be accepted.
            "Referrer-Policy": "strict-origin-when-cross-origin",
            **(headers_for(refusal) if refusal is not None else {}),
        },
    )


async def subscribe_page(request: AppRequest) -> Response:
    mailing_list = await _list(request)
    back = _back(mailing_list, request.query_params.get("back") or request.headers.get("referer"))
    return await _form(request, mailing_list, back)


async def subscribe(request: AppRequest) -> Response:
    mailing_list = await _list(request)
    fields: dict[str, Any] = {}
    try:
        cors.check_origin(request, mailing_list)
        fields = await read_fields(request)
        await request.state["signups"].take(mailing_list, fields, caller(request))
    except Refusal as refusal:
        values = {k: v for k, v in fields.items() if k in KEPT and isinstance(v, str)}
        stamp = fields.get("form_stamp")
        kept = stamp if isinstance(stamp, str) and _stamp_ok(request, mailing_list, stamp) else None
        back = _back(mailing_list, str(fields.get("back", "")))
        return await _form(request, mailing_list, back, values=values, refusal=refusal, stamp=kept)
    back = _back(mailing_list, str(fields.get("back", "")))
    thanks = f"/subscribe/{mailing_list.slug}/thanks"
    if back:
        thanks += f"?back={quote(back, safe='')}"
    return RedirectResponse(thanks, status_code=303)


def _stamp_ok(request: AppRequest, mailing_list: MailingList, stamp: str) -> bool:
    """The form's own stamp, kept when the form is shown again: it only gets older."""
    return request.state["stamps"].age(stamp, mailing_list.slug) is not None


async def thanks(request: AppRequest) -> Response:
    mailing_list = await _list(request)
    return page(
        request,
        "pages/subscribe_result.html",
        {
            "list_name": mailing_list.name,
            "ok": True,
            "message": "",
            "errors": {},
            "back_url": _back(mailing_list, request.query_params.get("back")),
            "back_site": urlsplit(request.query_params.get("back") or "").netloc,
        },
        language=mailing_list.language,
    )


routes = [
    Route("/subscribe/{slug}", subscribe_page, methods=["GET"]),
    Route("/subscribe/{slug}", subscribe, methods=["POST"]),
    Route("/subscribe/{slug}/thanks", thanks, methods=["GET"]),
]
