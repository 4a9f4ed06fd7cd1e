"""People edited by hand and bulk actions, in the admin pages and the admin API: add a
person, edit one (name, attributes, lists), and act on everyone a search matches. The
rules are in ``service.editing`` and ``service.bulk``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service import bulk
from service.audit import along_with, entry
from service.auth.sessions import Principal
from service.editing import Edit, EditResult, add_person, edit_person, parse_attributes
from service.errors import Refusal
from service.lists import SLUG_PATTERN, all_lists
from service.people import person_record
from service.state import AppRequest
from service.validation import FIX_FIELDS
from service.web.admin.guard import missing_scope, protected
from service.web.admin.render import admin_page
from service.web.bodies import BadBody, parse_json_object
from service.web.params import filters_from, number, row_id

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}
FILTER_KEYS = ("q", "list", "status", "since", "until")


def _attributes(value: Any) -> dict[str, Any]:
    if not isinstance(value, (dict, str)):  # an object, or its JSON text from a form
        raise Refusal(FIX_FIELDS, status=422, fields={"attributes": "must be an object"})
    try:
        return parse_attributes(value)
    except ValueError as exc:
        raise Refusal(FIX_FIELDS, status=422, fields={"attributes": str(exc)}) from None


def _result_json(result: EditResult) -> dict[str, Any]:
    return {
        "id": result.subscriber_id,
        "added": result.added,
        "removed": result.removed,
        "not_added": result.refused,
    }


# Pages -----------------------------------------------------------------------------------


async def _form_page(
    request: AppRequest,
    principal: Principal,
    form: Mapping[str, Any],
    *,
    subscriber_id: int | None,
    errors: Mapping[str, str] | None = None,
    message: str = "",
    status: int = 200,
) -> Response:
    return admin_page(
        request,
        principal,
        "admin/subscriber_form.html",
        {
            "form": form,
            "subscriber_id": subscriber_id,
            "lists": await all_lists(request.state["db"]),
            "errors": errors or {},
            "message": message,
        },
        section="subscribers",
        status=status,
    )


def _posted(data: FormData) -> dict[str, Any]:
    return {
        "email": str(data.get("email", "")),
        "name": str(data.get("name", "")),
        "attributes": str(data.get("attributes", "")),
        "lists": [str(v) for v in data.getlist("lists")],
        "evidence": str(data.get("evidence", "")),
    }


async def new_subscriber_page(request: AppRequest, principal: Principal) -> Response:
    form: dict[str, Any] = {"email": "", "name": "", "attributes": "", "lists": [], "evidence": ""}
    if request.method == "POST":
        form = _posted(await request.form(max_files=0, max_fields=200))
        try:
            with along_with(entry(principal.actor, "subscriber.add", lists=list(form["lists"]))):
                result = await add_person(
                    request.state["db"],
                    request.state["emails"],
                    request.state["subscriptions"].addresses,
                    form,
                    form["lists"],
                    attributes=_attributes(form["attributes"]),
                    evidence=form["evidence"],
                    admin=principal.username,
                    cap=request.state["settings"].rate_limit_confirmations,
                )
        except Refusal as exc:
            return await _form_page(
                request,
                principal,
                form,
                subscriber_id=None,
                errors=exc.fields,
                message=exc.message,
                status=exc.status,
            )
        request.state["worker"].wake()
        return RedirectResponse(f"/admin/subscribers/{result.subscriber_id}", status_code=303)
    return await _form_page(request, principal, form, subscriber_id=None)


async def edit_subscriber_page(request: AppRequest, principal: Principal) -> Response:
    subscriber_id = row_id(str(request.path_params["subscriber_id"]))
    db = request.state["db"]
    record = await person_record(db, subscriber_id) if subscriber_id else None
    if record is None or subscriber_id is None:
        raise HTTPException(404, "No such subscriber.")
    person = record.subscriber
    form: dict[str, Any] = {
        "email": person.email,
        "name": person.name or "",
        "attributes": json.dumps(person.attributes or {}, ensure_ascii=False, indent=1)
        if person.attributes
        else "",
        "lists": [ml.slug for s, ml in record.subscriptions if s.status != "unsubscribed"],
        "left": {ml.slug for s, ml in record.subscriptions if s.status == "unsubscribed"},
        "evidence": "",
    }
    if request.method == "POST":
        posted = _posted(await request.form(max_files=0, max_fields=200))
        form.update({k: posted[k] for k in ("name", "attributes", "lists", "evidence")})
        try:
            with along_with(entry(principal.actor, "subscriber.edit", str(subscriber_id))):
                result = await edit_person(
                    db,
                    request.state["emails"],
                    subscriber_id,
                    Edit(
                        name=posted["name"],
                        attributes=_attributes(posted["attributes"]),
                        lists=frozenset(posted["lists"]),
                        evidence=posted["evidence"],
                    ),
                    admin=principal.username,
                    cap=request.state["settings"].rate_limit_confirmations,
                )
        except Refusal as exc:
            return await _form_page(
                request,
                principal,
                form,
                subscriber_id=subscriber_id,
                errors=exc.fields,
                message=exc.message,
                status=exc.status,
            )
        if result is None:
            raise HTTPException(404, "No such subscriber.")
        if result.added:
            request.state["worker"].wake()
        return admin_page(
            request,
            principal,
            "admin/subscriber_saved.html",
            {"result": result, "email": person.email},
            section="subscribers",
        )
    return await _form_page(request, principal, form, subscriber_id=subscriber_id)


def _bulk_from(fields: Mapping[str, Any]) -> bulk.Bulk:
    return bulk.Bulk(
        action=str(fields.get("action", "")),
        filters=filters_from({k: str(fields.get(k, "") or "") for k in FILTER_KEYS}),
        target=str(fields.get("target", "") or ""),
        evidence=str(fields.get("evidence", "") or ""),
    )


def _allowed(principal: Principal, asked: bulk.Bulk) -> bulk.Bulk:
    """Erasing in bulk needs the ``erase`` scope, like erasing one person."""
    if asked.action == "erase" and not principal.can("erase"):
        raise Refusal(missing_scope(principal, "erase"), status=403)
    return asked


async def bulk_page(request: AppRequest, principal: Principal) -> Response:
    """Two steps, no script: the search page's form asks; this page says how many people
    and what will happen, and its button does it (with the count it showed)."""
    data = await request.form(max_files=0, max_fields=20)
    fields = {k: str(v) for k, v in data.items()}
    kept = {k: fields[k] for k in FILTER_KEYS if fields.get(k)}
    context: dict[str, Any] = {
        "fields": fields,
        "step": "confirm",
        "error": "",
        "back": f"/admin/subscribers?{urlencode(kept)}",
    }
    status = 200
    try:
        asked = _allowed(principal, _bulk_from(fields))
        if fields.get("confirm") == "yes":
            expected = number(fields.get("expected", ""), most=2**31)
            with along_with(entry(principal.actor, f"bulk.{asked.action}", expected=expected)):
                outcome = await bulk.run(
                    request.state["db"],
                    request.state["emails"],
                    request.state["subscriptions"].addresses,
                    asked,
                    expected=expected if expected is not None else -1,
                    admin=principal.username,
                    cap=request.state["settings"].rate_limit_confirmations,
                )
            request.state["worker"].wake()
            context.update(step="done", outcome=outcome)
        else:
            context["plan"] = await bulk.plan(request.state["db"], asked)
    except Refusal as exc:
        context.update(step="refused", error=exc.message)
        status = exc.status
    return admin_page(
        request, principal, "admin/bulk.html", context, section="subscribers", status=status
    )


# API -------------------------------------------------------------------------------------


async def _json_body(request: AppRequest, example: str) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadBody(415, "Send a JSON object with Content-Type: application/json.")
    return parse_json_object(await request.body(), example=example)


def _text(data: Mapping[str, Any], key: str) -> str | None:
    """The text given for ``key``, None if left out (null is no text: a 422, as anywhere)."""
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str):
        raise Refusal(FIX_FIELDS, status=422, fields={key: "must be text"})
    return value


def _slugs(data: Mapping[str, Any]) -> list[str] | None:
    if "lists" not in data:
        return None
    value = data["lists"]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Refusal(FIX_FIELDS, status=422, fields={"lists": "must be a list of list slugs"})
    for slug in value:  # checked here: a NUL byte is not even something to look up
        if not re.fullmatch(SLUG_PATTERN, slug):
            raise Refusal(FIX_FIELDS, status=422, fields={"lists": f"no such list: {slug!r}"})
    return value


async def add_endpoint(request: AppRequest, principal: Principal) -> Response:
    data = await _json_body(request, '{"email": "reader@example.com", "lists": ["daily"]}')
    email, name = _text(data, "email"), _text(data, "name")
    with along_with(entry(principal.actor, "subscriber.add", lists=_slugs(data) or [])):
        result = await add_person(
            request.state["db"],
            request.state["emails"],
            request.state["subscriptions"].addresses,
            {k: v for k, v in (("email", email), ("name", name)) if v is not None},
            _slugs(data) or [],
            attributes=_attributes(data["attributes"]) if "attributes" in data else {},
            evidence=_text(data, "evidence") or "",
            admin=principal.username,
            cap=request.state["settings"].rate_limit_confirmations,
        )
    request.state["worker"].wake()
    return JSONResponse(_result_json(result), status_code=201, headers=NO_STORE)


async def edit_endpoint(request: AppRequest, principal: Principal) -> Response:
    subscriber_id = row_id(str(request.path_params["subscriber_id"]))
    data = await _json_body(request, '{"name": "Jo", "lists": ["daily"]}')
    attributes = data.get("attributes")
    slugs = _slugs(data)
    edit = Edit(
        name=_text(data, "name"),
        attributes=_attributes(attributes) if "attributes" in data else None,
        lists=frozenset(slugs) if slugs is not None else None,
        evidence=_text(data, "evidence") or "",
    )
    with along_with(entry(principal.actor, "subscriber.edit", str(subscriber_id))):
        result = (
            await edit_person(
                request.state["db"],
                request.state["emails"],
                subscriber_id,
                edit,
                admin=principal.username,
                cap=request.state["settings"].rate_limit_confirmations,
            )
            if subscriber_id is not None
            else None
        )
    if result is None:
        raise Refusal("No such subscriber.", status=404)
    if result.added:
        request.state["worker"].wake()
    return JSONResponse(_result_json(result), headers=NO_STORE)


async def bulk_endpoint(request: AppRequest, principal: Principal) -> Response:
    data = await _json_body(request, '{"action": "unsubscribe", "filters": {"list": "daily"}}')
    filters = data.get("filters", {})
    if not isinstance(filters, dict) or not all(
        isinstance(filters.get(k, ""), str) for k in FILTER_KEYS
    ):
        raise Refusal(
            FIX_FIELDS, status=422, fields={"filters": "must be an object of text values"}
        )
    for key in ("action", "target", "evidence"):
        _text(data, key)
    expected = data.get("expected")
    if "expected" in data and (type(expected) is not int or expected < 0):
        raise Refusal(FIX_FIELDS, status=422, fields={"expected": "must be a whole number"})
    asked = _allowed(
        principal,
        _bulk_from({**filters, **{k: data.get(k) for k in ("action", "target", "evidence")}}),
    )
    if expected is None:
        planned = await bulk.plan(request.state["db"], asked)
        return JSONResponse(
            {"done": False, "matching": planned.count, "description": planned.text},
            headers=NO_STORE,
        )
    with along_with(entry(principal.actor, f"bulk.{asked.action}", expected=expected)):
        outcome = await bulk.run(
            request.state["db"],
            request.state["emails"],
            request.state["subscriptions"].addresses,
            asked,
            expected=expected,
            admin=principal.username,
            cap=request.state["settings"].rate_limit_confirmations,
        )
    request.state["worker"].wake()
    return JSONResponse(
        {
            "done": True,
            "matching": outcome.count,
            "changed": outcome.changed,
            "left": outcome.left,
            "description": outcome.text,
        },
        headers=NO_STORE,
    )


routes = [
    Route("/admin/subscribers/new", protected(new_subscriber_page), methods=["GET", "POST"]),
    Route("/admin/subscribers/bulk", protected(bulk_page), methods=["POST"]),
    Route(
        "/admin/subscribers/{subscriber_id}/edit",
        protected(edit_subscriber_page),
        methods=["GET", "POST"],
    ),
    Route("/api/v1/admin/subscribers", protected(add_endpoint), methods=["POST"]),
    Route("/api/v1/admin/subscribers/bulk", protected(bulk_endpoint), methods=["POST"]),
    Route(
        "/api/v1/admin/subscribers/{subscriber_id:person}",
        protected(edit_endpoint),
        methods=["PATCH"],
    ),
]
