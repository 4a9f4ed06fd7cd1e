"""Admin JSON API, ``/api/v1/admin/``: the admin pages' powers, for scripts (Bearer token)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.audit import along_with, entry
from service.auth.sessions import Principal
from service.errors import Refusal
from service.lists import all_lists, create_list, get_list, update_list
from service.models import MailingList
from service.people import SHOWN_STATUSES, person_record, personal_data, search
from service.state import AppRequest
from service.stats import daily_activity, list_counts
from service.subscriptions import unsubscribe_by_admin
from service.web.admin.guard import protected
from service.web.bodies import BadBody, parse_json_object
from service.web.params import MAX_ROW_ID, filters_from, number, row_id
from service.widget_settings import effective

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return DATE.fullmatch(value) is not None


def no_such_subscriber() -> Refusal:
    return Refusal("No such subscriber.", status=404)


@contextlib.contextmanager
def invalid_as_422() -> Iterator[None]:
    """The list rules say what is wrong with a ValueError: that is the caller's 422."""
    try:
        yield
    except ValueError as exc:
        raise Refusal(str(exc), status=422) from None


# What each JSON field must be, checked before the list rules read them as text (which
# would store {"a": 1} as the wording "{'a': 1}"), as the OpenAPI document says.
_STRINGS = frozenset(
    {"slug", "name", "language", "consent_text"}
    | {"position", "theme", "accent", "trigger", "privacyUrl", "title", "text", "button"}
    | {"success"}
)
_FLAGS = frozenset({"double_opt_in", "nameField", "consentCheckbox", "proofOfWork"})
_NUMBERS = frozenset({"delay", "scroll", "dismissDays"})


def check_types(data: dict[str, Any]) -> None:
    """422 naming every field whose JSON type is wrong."""
    wrong: dict[str, str] = {}
    for key, value in data.items():
        if key == "origins":
            if not isinstance(value, list) or not all(
                isinstance(o, str) and o.strip() for o in value
            ):
                raise BadBody(422, "origins must be a list of URLs.")
        elif key in _FLAGS:
            if not isinstance(value, bool):
                wrong[key] = "must be true or false"
        elif key in _NUMBERS:
            whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            if not whole or isinstance(value, bool):
                wrong[key] = "must be a whole number"
        elif key in _STRINGS and not isinstance(value, str):
            wrong[key] = "must be a string"
    if wrong:
        listed = "; ".join(f"{key}: {why}" for key, why in wrong.items())
        raise Refusal(f"Wrong type: {listed}.", status=422, fields=wrong)


def _as_text(key: str, value: Any) -> str:
    """A checked JSON value as the list rules read it (the command line's text)."""
    if key == "origins" and isinstance(value, list):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():  # 29.0 is a whole number in JSON
        return str(int(value))
    return str(value)


async def json_object(request: AppRequest) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadBody(415, "Send a JSON object with Content-Type: application/json.")
    return parse_json_object(await request.body(), example='{"name": "Morning briefing"}')


def list_json(mailing_list: MailingList) -> dict[str, Any]:
    return {
        "slug": mailing_list.slug,
        "name": mailing_list.name,
        "language": mailing_list.language,
        "allowed_origins": mailing_list.allowed_origins,
        "double_opt_in": mailing_list.double_opt_in,
        "consent_text": mailing_list.consent_text,
        "box": effective(mailing_list),
        "created_at": mailing_list.created_at.isoformat(),
    }


async def lists_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    if request.method == "GET":
        return JSONResponse(
            {"lists": [list_json(ml) for ml in await all_lists(db)]}, headers=NO_STORE
        )
    data = await json_object(request)
    check_types(data)
    origins = data.get("origins", [])
    with invalid_as_422(), along_with(entry(principal.actor, "list.create", str(data.get("slug")))):
        created = await create_list(
            db,
            slug=str(data.get("slug", "")),
            name=str(data.get("name", "")),
            origins=origins,
            language=str(data.get("language", "en")),
            double_opt_in=bool(data.get("double_opt_in", True)),
            consent_text=str(data.get("consent_text", "")),
        )
    request.state["lists"].clear()  # it was not there a moment ago
    return JSONResponse(list_json(created), status_code=201, headers=NO_STORE)


async def list_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    slug = request.path_params["slug"]
    if request.method == "PATCH":
        data = await json_object(request)
        check_types(data)
        changes = {k: _as_text(k, v) for k, v in data.items()}
        with (
            invalid_as_422(),
            along_with(entry(principal.actor, "list.update", slug, fields=sorted(changes))),
        ):
            try:
                await update_list(db, slug, changes)
            except LookupError:
                raise Refusal(f"There is no list {slug!r}.", status=404) from None
        request.state["lists"].clear()
    mailing_list = await get_list(db, slug)
    if mailing_list is None:
        raise Refusal(f"There is no list {slug!r}.", status=404)
    return JSONResponse(list_json(mailing_list), headers=NO_STORE)


async def subscribers_endpoint(request: AppRequest, principal: Principal) -> Response:
    params = request.query_params
    for name in ("since", "until"):
        for value in params.getlist(name):
            if value and not _is_date(value):
                raise Refusal(f"{name} must be a date like 2025-01-31.", status=422)
    status = params.get("status", "")
    if status and status not in SHOWN_STATUSES:
        raise Refusal(f"status must be one of {', '.join(SHOWN_STATUSES)}.", status=422)
    for name in ("after", "limit"):
        for value in params.getlist(name):
            if not (value.isascii() and value.isdigit()) or (
                name == "limit" and not (len(value) <= 3 and 1 <= int(value) <= 500)
            ):
                raise Refusal(f"{name} must be a whole number (limit: 1 to 500).", status=422)
    after = number(params.get("after", ""), most=MAX_ROW_ID)
    limit = number(params.get("limit", ""), most=500) or 50
    page = await search(request.state["db"], filters_from(params), after=after, limit=limit)
    items = [
        {
            "id": r.id,
            "email": r.email,
            "name": r.name,
            "created_at": r.created_at.isoformat(),
            "lists": [{"list": slug, "status": status} for slug, status in r.lists],
        }
        for r in page.rows
    ]
    return JSONResponse(
        {"items": items, "total": page.total, "next_after": page.next_after}, headers=NO_STORE
    )


def _id(request: AppRequest) -> int | None:
    return row_id(str(request.path_params["subscriber_id"]))


async def subscriber_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    subscriber_id = _id(request)
    if request.method == "DELETE":
        with along_with(entry(principal.actor, "subscriber.erase", f"subscriber {subscriber_id}")):
            erased = subscriber_id is not None and await request.state["subscriptions"].erase(
                subscriber_id, principal.username
            )
        if not erased:
            raise no_such_subscriber()
        return Response(status_code=204)
    record = await person_record(db, subscriber_id) if subscriber_id is not None else None
    if record is None:
        raise no_such_subscriber()
    return JSONResponse({"id": record.subscriber.id, **personal_data(record)}, headers=NO_STORE)


async def unsubscribe_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    subscriber_id = _id(request)
    data = await json_object(request)
    record = await person_record(db, subscriber_id) if subscriber_id is not None else None
    if record is None:
        raise no_such_subscriber()
    matches = [sub for sub, ml in record.subscriptions if ml.slug == data.get("list")]
    if not matches:
        email, slug = record.subscriber.email, data.get("list")
        raise Refusal(f"{email} is not on the list {slug!r}.", status=404)
    audit = entry(
        principal.actor,
        "subscriber.unsubscribe",
        f"subscriber {record.subscriber.id}",
        list=data.get("list"),
    )
    with along_with(audit):
        await unsubscribe_by_admin(db, matches[0].id, principal.username)
    return JSONResponse({"status": "unsubscribed"}, headers=NO_STORE)


async def stats_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    return JSONResponse(
        {
            "lists": [
                {"list": lc.slug, "name": lc.name, **lc.counts} for lc in await list_counts(db)
            ],
            "daily": [
                {
                    "day": d.day.isoformat(),
                    "signups": d.signups,
                    "confirmations": d.confirmations,
                    "unsubscribes": d.unsubscribes,
                }
                for d in await daily_activity(db)
            ],
        },
        headers=NO_STORE,
    )


routes = [
    Route("/api/v1/admin/lists", protected(lists_endpoint), methods=["GET", "POST"]),
    Route("/api/v1/admin/lists/{slug}", protected(list_endpoint), methods=["GET", "PATCH"]),
    Route("/api/v1/admin/subscribers", protected(subscribers_endpoint), methods=["GET"]),
    Route(
        "/api/v1/admin/subscribers/{subscriber_id:person}",
        protected(subscriber_endpoint, {"GET": "read", "DELETE": "erase"}),
        methods=["GET", "DELETE"],
    ),
    Route(
        "/api/v1/admin/subscribers/{subscriber_id:person}/unsubscribe",
        protected(unsubscribe_endpoint),
        methods=["POST"],
    ),
    Route("/api/v1/admin/stats", protected(stats_endpoint), methods=["GET"]),
]
