"""Admin JSON API, ``/api/v1/admin/``: the admin pages' powers, for scripts (Bearer token)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.audit import along_with, entry
from service.auth.sessions import Principal
from service.errors import Refusal
from service.lists import all_lists, create_list, get_list, update_list
from service.models import MailingList
from service.people import person_record, personal_data, search
from service.state import AppRequest
from service.stats import daily_activity, list_counts
from service.subscriptions import unsubscribe_by_admin
from service.web.admin.guard import protected
from service.web.bodies import BadBody, parse_json_object
from service.web.params import MAX_ROW_ID, filters_from, number, row_id
from service.widget_settings import effective

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}


def no_such_subscriber() -> Refusal:
    return Refusal("No such subscriber.", status=404)


@contextlib.contextmanager
def invalid_as_422() -> Iterator[None]:
    """The list rules say what is wrong with a ValueError: that is the caller's 422."""
    try:
        yield
    except ValueError as exc:
        raise Refusal(str(exc), status=422) from None


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
    origins = data.get("origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise BadBody(422, "origins must be a list of URLs.")
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
        origins = data.get("origins", "")
        if not isinstance(origins, str) and not (
            isinstance(origins, list) and all(isinstance(o, str) for o in origins)
        ):
            raise BadBody(422, "origins must be a list of URLs.")
        changes = {
            k: ",".join(v) if k == "origins" and isinstance(v, list) else str(v)
            for k, v in data.items()
        }
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
        "/api/v1/admin/subscribers/{subscriber_id}",
        protected(subscriber_endpoint, {"GET": "read", "DELETE": "erase"}),
        methods=["GET", "DELETE"],
    ),
    Route(
        "/api/v1/admin/subscribers/{subscriber_id}/unsubscribe",
        protected(unsubscribe_endpoint),
        methods=["POST"],
    ),
    Route("/api/v1/admin/stats", protected(stats_endpoint), methods=["GET"]),
]
