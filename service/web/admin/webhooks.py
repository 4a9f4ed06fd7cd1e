"""Webhook endpoints in the admin: pages (``/admin/webhooks``) and the JSON API
(``/api/v1/admin/webhooks``). The secret is in the answer that adds an endpoint or
rotates its secret, and never again."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from service.audit import along_with, entry
from service.auth.sessions import Principal
from service.errors import Refusal
from service.lists import all_lists
from service.state import AppRequest
from service.web.admin.guard import protected
from service.web.admin.render import admin_page
from service.web.bodies import BadBody, parse_json_object
from service.web.params import MAX_ROW_ID, number, row_id
from service.webhooks import endpoints
from service.webhooks.events import DEFAULT_EVENTS, EVENT_TYPES
from service.webhooks.targets import UnsafeTarget

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}
# Webhooks send subscribers' data elsewhere: an owner's power, like managing tokens.
ADMIN = "admin"


def _strings(data: dict[str, Any], key: str) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadBody(422, f"{key} must be a list of strings.")
    return list(value)


async def _json(request: AppRequest) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadBody(415, "Send a JSON object with Content-Type: application/json.")
    return parse_json_object(await request.body(), example='{"url": "https://example.com/hook"}')


def _endpoint_id(request: AppRequest) -> int:
    found = row_id(str(request.path_params["endpoint_id"]))
    if found is None:
        raise Refusal("No such webhook endpoint.", status=404)
    return found


async def _add(request: AppRequest, principal: Principal, data: dict[str, Any]) -> endpoints.Added:
    url = data.get("url")
    description = data.get("description", "")
    if not isinstance(url, str) or not url.strip():
        raise BadBody(422, "url is required: the https:// address to send events to.")
    if not isinstance(description, str):
        raise BadBody(422, "description must be a string.")
    events, lists = _strings(data, "events"), _strings(data, "lists")
    audit = entry(principal.actor, "webhook.create", url[:200], events=events, lists=lists)
    try:
        with along_with(audit):
            return await endpoints.add(
                request.state["db"],
                url,
                event_types=events,
                list_slugs=lists,
                description=description,
                allow_private=request.state["settings"].webhook_allow_private,
            )
    except (ValueError, UnsafeTarget) as exc:
        raise Refusal(str(exc), status=422) from None


# The API -------------------------------------------------------------------------------


async def api_endpoints(request: AppRequest, principal: Principal) -> Response:
    if request.method == "GET":
        found = await endpoints.list_endpoints(request.state["db"])
        return JSONResponse(
            {"endpoints": [e.json() for e in found], "event_types": EVENT_TYPES},
            headers=NO_STORE,
        )
    added = await _add(request, principal, await _json(request))
    return JSONResponse(
        {**added.endpoint.json(), "secret": added.secret}, status_code=201, headers=NO_STORE
    )


async def api_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    endpoint_id = _endpoint_id(request)
    if request.method == "DELETE":
        with along_with(entry(principal.actor, "webhook.remove", f"endpoint {endpoint_id}")):
            removed = await endpoints.remove(db, endpoint_id)
        if not removed:
            raise Refusal("No such webhook endpoint.", status=404)
        return Response(status_code=204)
    found = await endpoints.get(db, endpoint_id)
    if found is None:
        raise Refusal("No such webhook endpoint.", status=404)
    return JSONResponse(found.json(), headers=NO_STORE)


async def api_action(request: AppRequest, principal: Principal) -> Response:
    endpoint_id = _endpoint_id(request)
    action = request.url.path.rsplit("/", 1)[-1]
    if action not in {"pause", "resume", "rotate", "test"}:
        raise Refusal("Unknown action; send pause, resume, rotate or test.", status=404)
    with along_with(
        entry(principal.actor, "webhook.change", f"endpoint {endpoint_id}", what=action)
    ):
        return await _api_action(request, principal, endpoint_id, action)


async def _api_action(
    request: AppRequest, principal: Principal, endpoint_id: int, action: str
) -> Response:
    db = request.state["db"]
    if action == "rotate":
        secret = await endpoints.rotate(db, endpoint_id)
        if secret is None:
            raise Refusal("No such webhook endpoint.", status=404)
        found = await endpoints.get(db, endpoint_id)
        assert found is not None
        return JSONResponse({**found.json(), "secret": secret}, headers=NO_STORE)
    if action == "test":
        delivery = await endpoints.send_test(db, endpoint_id)
        if delivery is None:
            raise Refusal("No such webhook endpoint.", status=404)
        request.state["worker"].wake()
        return JSONResponse({"delivery_id": delivery}, status_code=202, headers=NO_STORE)
    if not await endpoints.set_paused(db, endpoint_id, action == "pause", principal.username):
        raise Refusal("No such webhook endpoint.", status=404)
    request.state["worker"].wake()
    found = await endpoints.get(db, endpoint_id)
    assert found is not None
    return JSONResponse(found.json(), headers=NO_STORE)


async def api_deliveries(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    endpoint_id = _endpoint_id(request)
    if await endpoints.get(db, endpoint_id) is None:
        raise Refusal("No such webhook endpoint.", status=404)
    before = number(request.query_params.get("before", ""), most=MAX_ROW_ID)
    limit = number(request.query_params.get("limit", ""), most=200) or 50
    rows = await endpoints.deliveries(db, endpoint_id, before=before, limit=limit)
    next_before = rows[-1].id if len(rows) == limit else None
    return JSONResponse(
        {"items": [r.json() for r in rows], "next_before": next_before}, headers=NO_STORE
    )


async def api_redeliver(request: AppRequest, principal: Principal) -> Response:
    endpoint_id = _endpoint_id(request)
    delivery_id = row_id(str(request.path_params["delivery_id"]))
    audit = entry(
        principal.actor, "webhook.change", f"endpoint {endpoint_id}", redeliver=delivery_id
    )
    with along_with(audit):
        done = delivery_id is not None and await endpoints.redeliver(
            request.state["db"], endpoint_id, delivery_id
        )
    if not done:
        raise Refusal("No such delivery, or it is being sent right now.", status=404)
    request.state["worker"].wake()
    return JSONResponse({"delivery_id": delivery_id, "status": "queued"}, status_code=202)


# The pages -----------------------------------------------------------------------------


async def _list_page(
    request: AppRequest,
    principal: Principal,
    *,
    form: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    db = request.state["db"]
    return admin_page(
        request,
        principal,
        "admin/webhooks.html",
        {
            "endpoints": await endpoints.list_endpoints(db),
            "lists": await all_lists(db),
            "event_types": EVENT_TYPES,
            "form": form or {"url": "", "description": "", "events": DEFAULT_EVENTS, "lists": []},
            "error": error,
        },
        section="webhooks",
        status=status,
    )


async def webhooks_page(request: AppRequest, principal: Principal) -> Response:
    if request.method == "GET":
        return await _list_page(request, principal)
    data = await request.form(max_files=0, max_fields=40)
    form = {
        "url": str(data.get("url", "")),
        "description": str(data.get("description", "")),
        "events": [str(v) for v in data.getlist("events")],
        "lists": [str(v) for v in data.getlist("lists")],
    }
    try:
        added = await _add(request, principal, form)
    except Refusal as exc:
        return await _list_page(request, principal, form=form, error=exc.message, status=422)
    return await _endpoint_page(request, principal, added.endpoint.id, secret=added.secret)


async def _endpoint_page(
    request: AppRequest,
    principal: Principal,
    endpoint_id: int,
    *,
    secret: str = "",
) -> Response:
    db = request.state["db"]
    found = await endpoints.get(db, endpoint_id)
    if found is None:
        raise HTTPException(404, "No such webhook endpoint.")
    before = number(request.query_params.get("before", ""), most=MAX_ROW_ID)
    rows = await endpoints.deliveries(db, endpoint_id, before=before)
    return admin_page(
        request,
        principal,
        "admin/webhook.html",
        {
            "endpoint": found,
            "deliveries": rows,
            "next_before": rows[-1].id if len(rows) == 50 else None,
            "secret": secret,
        },
        section="webhooks",
    )


async def webhook_page(request: AppRequest, principal: Principal) -> Response:
    try:
        endpoint_id = _endpoint_id(request)
    except Refusal:
        raise HTTPException(404, "No such webhook endpoint.") from None
    if request.method == "GET":
        return await _endpoint_page(request, principal, endpoint_id)
    data = await request.form(max_files=0, max_fields=5)
    action = str(data.get("action", ""))
    kind = "webhook.remove" if action == "remove" else "webhook.change"
    with along_with(entry(principal.actor, kind, f"endpoint {endpoint_id}", what=action)):
        return await _page_action(request, principal, endpoint_id, action, data)


async def _page_action(
    request: AppRequest, principal: Principal, endpoint_id: int, action: str, data: Any
) -> Response:
    db = request.state["db"]
    done = ""
    if action == "rotate":
        secret = await endpoints.rotate(db, endpoint_id)
        if secret is None:
            raise HTTPException(404, "No such webhook endpoint.")
        return await _endpoint_page(request, principal, endpoint_id, secret=secret)
    if action == "remove":
        await endpoints.remove(db, endpoint_id)
        return RedirectResponse("/admin/webhooks?done=removed", status_code=303)
    if action == "test":
        done = "test" if await endpoints.send_test(db, endpoint_id) else ""
    elif action in {"pause", "resume"}:
        ok = await endpoints.set_paused(db, endpoint_id, action == "pause", principal.username)
        done = action + "d" if ok else ""
    elif action == "redeliver":
        delivery = row_id(str(data.get("delivery", "")))
        ok = delivery is not None and await endpoints.redeliver(db, endpoint_id, delivery)
        done = "redelivered" if ok else ""
    if not done:
        raise HTTPException(404, "No such webhook endpoint or delivery.")
    request.state["worker"].wake()
    return RedirectResponse(f"/admin/webhooks/{endpoint_id}?done={done}", status_code=303)


routes = [
    Route("/admin/webhooks", protected(webhooks_page, ADMIN), methods=["GET", "POST"]),
    Route("/admin/webhooks/{endpoint_id}", protected(webhook_page, ADMIN), methods=["GET", "POST"]),
    Route("/api/v1/admin/webhooks", protected(api_endpoints, ADMIN), methods=["GET", "POST"]),
    Route(
        "/api/v1/admin/webhooks/{endpoint_id}",
        protected(api_endpoint, ADMIN),
        methods=["GET", "DELETE"],
    ),
    *(
        Route(
            f"/api/v1/admin/webhooks/{{endpoint_id}}/{action}",
            protected(api_action, ADMIN),
            methods=["POST"],
        )
        for action in ("pause", "resume", "rotate", "test")
    ),
    Route(
        "/api/v1/admin/webhooks/{endpoint_id}/deliveries",
        protected(api_deliveries, ADMIN),
        methods=["GET"],
    ),
    Route(
        "/api/v1/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver",
        protected(api_redeliver, ADMIN),
        methods=["POST"],
    ),
]
