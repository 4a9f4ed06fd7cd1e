"""Admin JSON API, ``/api/v1/admin/``: the admin pages' powers, for scripts (Bearer token)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.auth.sessions import Principal
from service.lists import ListExists, all_lists, create_list, get_list, update_list
from service.models import MailingList
from service.people import person_record, personal_data, search
from service.state import AppRequest
from service.stats import daily_activity, list_counts
from service.subscriptions import erase, unsubscribe_by_admin
from service.web.admin.guard import protected
from service.web.admin.pages import MAX_ROW_ID, filters_from, number, row_id
from service.web.bodies import BadBody, parse_json_object
from service.web.refusals import api_error
from service.widget_settings import effective

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}


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
    try:
        data = await json_object(request)
        origins = data.get("origins", [])
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise BadBody(422, "origins must be a list of URLs.")
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
    except BadBody as exc:
        return api_error(exc.status, exc.message)
    except ListExists as exc:
        return api_error(409, str(exc))
    except ValueError as exc:
        return api_error(422, str(exc))
    return JSONResponse(list_json(created), status_code=201, headers=NO_STORE)


async def list_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    slug = request.path_params["slug"]
    if request.method == "PATCH":
        try:
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
            await update_list(db, slug, changes)
            request.state["lists"].clear()
        except BadBody as exc:
            return api_error(exc.status, exc.message)
        except LookupError:
            return api_error(404, f"There is no list {slug!r}.")
        except ValueError as exc:
            return api_error(422, str(exc))
    mailing_list = await get_list(db, slug)
    if mailing_list is None:
        return api_error(404, f"There is no list {slug!r}.")
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
    return JSONResponse({"items": items, "next_after": page.next_after}, headers=NO_STORE)


def _id(request: AppRequest) -> int | None:
    return row_id(str(request.path_params["subscriber_id"]))


async def subscriber_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    subscriber_id = _id(request)
    if request.method == "DELETE":
        if subscriber_id is None or not await erase(db, subscriber_id, principal.username):
            return api_error(404, "No such subscriber.")
        return Response(status_code=204)
    record = await person_record(db, subscriber_id) if subscriber_id is not None else None
    if record is None:
        return api_error(404, "No such subscriber.")
    return JSONResponse({"id": record.subscriber.id, **personal_data(record)}, headers=NO_STORE)


async def unsubscribe_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    subscriber_id = _id(request)
    try:
        data = await json_object(request)
    except BadBody as exc:
        return api_error(exc.status, exc.message)
    record = await person_record(db, subscriber_id) if subscriber_id is not None else None
    if record is None:
        return api_error(404, "No such subscriber.")
    matches = [sub for sub, ml in record.subscriptions if ml.slug == data.get("list")]
    if not matches:
        return api_error(404, f"{record.subscriber.email} is not on the list {data.get('list')!r}.")
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
                {"day": d.day.isoformat(), "signups": d.signups, "confirmations": d.confirmations}
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
        protected(subscriber_endpoint),
        methods=["GET", "DELETE"],
    ),
    Route(
        "/api/v1/admin/subscribers/{subscriber_id}/unsubscribe",
        protected(unsubscribe_endpoint),
        methods=["POST"],
    ),
    Route("/api/v1/admin/stats", protected(stats_endpoint), methods=["GET"]),
]
