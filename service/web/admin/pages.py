"""Admin pages: dashboard, lists, subscribers. Server-rendered, no external assets."""

from __future__ import annotations

import contextlib
import json
from importlib.resources import files
from urllib.parse import urlencode

from markupsafe import Markup, escape
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from service.audit import along_with, entry
from service.audit import record as record_event
from service.auth.sessions import Principal
from service.i18n import LANGUAGES
from service.lists import ListErrors, ListExists, all_lists, create_list, get_list, update_list
from service.people import (
    SHOWN_STATUSES,
    PersonRecord,
    person_record,
    personal_data,
    search,
)
from service.state import AppRequest
from service.stats import Daily, daily_activity, list_counts, people_counts
from service.subscriptions import consent_wording, unsubscribe_by_admin
from service.web.admin.guard import protected
from service.web.admin.list_form import editor_values
from service.web.admin.render import admin_page
from service.web.assets import snippet
from service.web.middleware import content_security_policy, csp_nonce
from service.web.params import MAX_ROW_ID, filters_from, number, row_id
from service.web.responses import page
from service.widget_settings import TARGETING_KEYS, TEXT_KEYS, effective, validate_changes

__all__ = ["routes"]


SERIES = (  # (attribute, colour): the dashboard chart's bars, in order
    ("signups", "#1a56db"),
    ("confirmations", "#059669"),
    ("unsubscribes", "#d97706"),
)


def chart(days: list[Daily]) -> Markup:
    """Signups, confirmations and unsubscribes per day as an inline SVG bar chart (no
    script needed)."""
    width, height, pad = 720, 180, 24
    top = max([getattr(d, name) for d in days for name, _ in SERIES] + [1])
    slot = (width - pad) / len(days)
    bar = max(1.0, slot / len(SERIES) - 1)
    parts = [
        f'<svg viewBox="0 0 {width} {height + 20}" role="img" width="100%" '
        f'aria-label="Signups and confirmations per day, with unsubscribes">'
    ]
    parts.append(f'<text x="0" y="12" font-size="11" fill="currentColor">{top:,}</text>')
    for i, d in enumerate(days):
        x = pad + i * slot
        for n, (name, colour) in enumerate(SERIES):
            value = getattr(d, name)
            h = (height - 16) * value / top
            parts.append(
                f'<rect x="{x + n * (bar + 1):.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{d.day.isoformat()}: {value:,} '
                f"{name}</title></rect>"
            )
        if i % 7 == 0 or (i == len(days) - 1 and i % 7 >= 3):
            parts.append(
                f'<text x="{x:.1f}" y="{height + 14}" font-size="11" '
                f'fill="currentColor">{escape(d.day.strftime("%d %b"))}</text>'
            )
    parts.append(
        f'<line x1="{pad}" y1="{height}" x2="{width}" y2="{height}" '
        'stroke="currentColor" stroke-opacity=".3"/></svg>'
    )
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped dates only


async def dashboard(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    lists = await list_counts(db)
    people = await people_counts(db)
    days = await daily_activity(db)
    return admin_page(
        request,
        principal,
        "admin/dashboard.html",
        {"lists": lists, "people": people, "days": days, "chart": chart(days)},
        section="dashboard",
    )


async def lists_page(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    error = ""
    form: dict[str, str] = {"slug": "", "name": "", "language": "en", "origins": ""}
    if request.method == "POST":
        data = await request.form(max_files=0, max_fields=20)
        form = {key: str(data.get(key, "")).strip() for key in form}
        try:
            with along_with(entry(principal.actor, "list.create", form["slug"])):
                await create_list(
                    db,
                    slug=form["slug"],
                    name=form["name"],
                    origins=form["origins"].split(),
                    language=form["language"],
                )
            request.state["lists"].clear()  # it was not there a moment ago
        except (ValueError, ListExists) as exc:
            error = str(exc)
        else:
            return RedirectResponse(f"/admin/lists/{form['slug']}?done=created", status_code=303)
    return admin_page(
        request,
        principal,
        "admin/lists.html",
        {"lists": await all_lists(db), "form": form, "error": error, "languages": LANGUAGES},
        section="lists",
        status=422 if error else 200,
    )


PREVIEW_KEYS = (*TEXT_KEYS, "position", "theme", "accent")
WIDGET_FIELDS = (
    *TEXT_KEYS,
    "position",
    "theme",
    "accent",
    "trigger",
    "delay",
    "scroll",
    "dismissDays",
    "nameField",
    "consentCheckbox",
    "privacyUrl",
    "proofOfWork",
    *TARGETING_KEYS,
)
LIST_FIELDS = ("name", "language", "double_opt_in", "consent_text")


async def list_edit(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    slug = request.path_params["slug"]
    error = ""
    errors: dict[str, str] = {}  # by field: shown at the field, every edit kept
    posted: dict[str, str] | None = None
    if request.method == "POST":
        data = await request.form(max_files=0, max_fields=60)
        changes: dict[str, str] = {}
        for key in (*LIST_FIELDS, *WIDGET_FIELDS):
            values = data.getlist(key)
            if values:
                changes[key] = str(values[-1])  # a ticked checkbox follows its hidden "false"
        changes["origins"] = ",".join(str(data.get("origins", "")).split())
        try:
            with along_with(entry(principal.actor, "list.update", slug, fields=sorted(changes))):
                await update_list(db, slug, changes)
            request.state["lists"].clear()
        except LookupError:
            raise HTTPException(404, f"There is no list {slug!r}.") from None
        except ListErrors as exc:
            errors, posted = exc.fields, changes
            error = "Nothing was saved: correct the marked fields (your other changes are kept)."
        except ValueError as exc:
            error = str(exc)
        else:
            return RedirectResponse(f"/admin/lists/{slug}?done=saved", status_code=303)
    mailing_list = await get_list(db, slug)
    if mailing_list is None:
        raise HTTPException(404, f"There is no list {slug!r}.")
    context = {
        "ml": mailing_list,
        "settings": effective(mailing_list),
        "stored": mailing_list.widget or {},
        "snippet": snippet(request.state["settings"].base_url, slug),
        "languages": LANGUAGES,
        "default_consent": consent_wording(mailing_list) if not mailing_list.consent_text else "",
        "error": error,
        "errors": errors,
        "values": editor_values(mailing_list, posted),
    }
    return admin_page(
        request,
        principal,
        "admin/list_edit.html",
        context,
        section="lists",
        status=422 if error else 200,
    )


async def list_preview(request: AppRequest, principal: Principal) -> Response:
    mailing_list = await get_list(request.state["db"], request.path_params["slug"])
    if mailing_list is None:
        raise HTTPException(404, "There is no such list.")
    overrides: dict[str, str] = {}
    for key in PREVIEW_KEYS:  # unsaved values from the editor; invalid ones are left out
        if key in request.query_params:
            with contextlib.suppress(ValueError):
                overrides.update(validate_changes({key: request.query_params[key]}))
    return page(
        request,
        "admin/preview.html",
        {"ml": mailing_list, "overrides": overrides},
        language="en",
        headers={
            "Cache-Control": "no-store",
            # Framed by the list editor; the widget it runs fetches the list's settings.
            "Content-Security-Policy": content_security_policy(
                csp_nonce(request.scope),
                connect_src="'self'",
                form_action="'none'",
                frame_ancestors="'self'",
            ),
            "X-Frame-Options": "SAMEORIGIN",
        },
    )


async def subscribers_page(request: AppRequest, principal: Principal) -> Response:
    params = request.query_params
    filters = filters_from(params)
    after = number(params.get("after", ""), most=MAX_ROW_ID)
    result = await search(request.state["db"], filters, after=after)
    kept = {k: params[k] for k in ("q", "list", "status", "since", "until") if params.get(k)}
    next_url = (
        f"/admin/subscribers?{urlencode({**kept, 'after': result.next_after})}"
        if result.next_after
        else ""
    )
    return admin_page(
        request,
        principal,
        "admin/subscribers.html",
        {
            "page": result,
            "filters": filters,
            "lists": await all_lists(request.state["db"]),
            "since": params.get("since", ""),
            "until": params.get("until", ""),
            "after": after,
            "next_url": next_url,
            "first_url": f"/admin/subscribers?{urlencode(kept)}",
            "statuses": SHOWN_STATUSES,
        },
        section="subscribers",
    )


def _subscriber_id(request: AppRequest) -> int:
    found = row_id(str(request.path_params["subscriber_id"]))
    if found is None:
        raise HTTPException(404, "No such subscriber.")
    return found


async def subscriber_page(request: AppRequest, principal: Principal) -> Response:
    record = await person_record(request.state["db"], _subscriber_id(request))
    if record is None:
        raise HTTPException(404, "No such subscriber.")
    return admin_page(
        request, principal, "admin/subscriber.html", {"record": record}, section="subscribers"
    )


async def subscriber_data(request: AppRequest, principal: Principal) -> Response:
    record = await person_record(request.state["db"], _subscriber_id(request))
    if record is None:
        raise HTTPException(404, "No such subscriber.")
    body = json.dumps(personal_data(record), indent=2, ensure_ascii=False)
    target = f"subscriber {record.subscriber.id}"
    await record_event(request.state["db"], entry(principal.actor, "subscriber.data", target))
    return Response(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="subscriber-{record.subscriber.id}.json"',
            "Cache-Control": "no-store",
        },
    )


async def subscriber_unsubscribe(request: AppRequest, principal: Principal) -> Response:
    subscriber_id = _subscriber_id(request)
    data = await request.form(max_files=0, max_fields=5)
    record = await person_record(request.state["db"], subscriber_id)
    wanted = str(data.get("subscription", ""))
    if record is None or not any(str(s.id) == wanted for s, _ in record.subscriptions):
        raise HTTPException(404, "No such subscription.")
    audit = entry(principal.actor, "subscriber.unsubscribe", f"subscriber {subscriber_id}")
    with along_with(audit):
        await unsubscribe_by_admin(request.state["db"], int(wanted), principal.username)
    return RedirectResponse(
        f"/admin/subscribers/{subscriber_id}?done=unsubscribed", status_code=303
    )


async def subscriber_erase(request: AppRequest, principal: Principal) -> Response:
    """Two steps, no script: the button asks, the confirmation page's button erases.

    The result is shown on the page that answers the erasing POST, so the address is
    named without being kept anywhere (no redirect to a URL that carries it). Sent again
    (a reload), it says the data is already gone rather than showing an error.
    """
    subscriber_id = _subscriber_id(request)
    data = await request.form(max_files=0, max_fields=5)
    confirmed = data.get("confirm") == "yes"
    record = await person_record(request.state["db"], subscriber_id)
    if record is None:
        if not confirmed:
            raise HTTPException(404, "No such subscriber.")
        return _erase_page(request, principal, "gone", None)
    email = record.subscriber.email
    if not confirmed:
        return _erase_page(request, principal, "confirm", record)
    with along_with(entry(principal.actor, "subscriber.erase", f"subscriber {subscriber_id}")):
        erased = await request.state["subscriptions"].erase(subscriber_id, principal.username)
    if not erased:
        return _erase_page(request, principal, "gone", None)
    return _erase_page(request, principal, "erased", None, email=email)


def _erase_page(
    request: AppRequest,
    principal: Principal,
    step: str,
    record: PersonRecord | None,
    *,
    email: str | None = None,
) -> Response:
    return admin_page(
        request,
        principal,
        "admin/erase.html",
        {"step": step, "record": record, "email": email},
        section="subscribers",
    )


async def exports_page(request: AppRequest, principal: Principal) -> Response:
    return admin_page(
        request,
        principal,
        "admin/exports.html",
        {"lists": await all_lists(request.state["db"]), "summary": "", "error": ""},
        section="exports",
    )


async def admin_script(request: AppRequest) -> Response:
    body = files("service").joinpath("static/admin.js").read_bytes()
    return Response(
        body,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def admin_root(request: AppRequest) -> Response:
    return RedirectResponse("/admin/", status_code=308)


routes = [
    Route("/admin", admin_root, methods=["GET"]),
    Route("/admin/assets/admin.js", admin_script, methods=["GET"]),
    Route("/admin/", protected(dashboard), methods=["GET"]),
    Route("/admin/lists", protected(lists_page), methods=["GET", "POST"]),
    Route("/admin/lists/{slug}", protected(list_edit), methods=["GET", "POST"]),
    Route("/admin/lists/{slug}/preview", protected(list_preview), methods=["GET"]),
    Route("/admin/subscribers", protected(subscribers_page), methods=["GET"]),
    Route("/admin/subscribers/{subscriber_id}", protected(subscriber_page), methods=["GET"]),
    Route(
        "/admin/subscribers/{subscriber_id}/data.json",
        protected(subscriber_data, "export"),
        methods=["GET"],
    ),
    Route(
        "/admin/subscribers/{subscriber_id}/unsubscribe",
        protected(subscriber_unsubscribe),
        methods=["POST"],
    ),
    Route(
        "/admin/subscribers/{subscriber_id}/erase",
        protected(subscriber_erase, "erase"),
        methods=["POST"],
    ),
    Route("/admin/exports", protected(exports_page), methods=["GET"]),
]
