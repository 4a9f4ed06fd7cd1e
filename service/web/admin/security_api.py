"""Admin API for the admin side's own security: API tokens, admins and the audit log.

Every endpoint here needs the ``admin`` scope (an owner's session, or a token given that
scope). A token made here never has a scope its maker lacks.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from service.audit import ACTIONS, csv_chunks, event_json, list_events
from service.auth.api_tokens import (
    MAX_EXPIRY_DAYS,
    expiry_from_days,
    issue_token,
    list_tokens,
    revoke_token,
    token_scopes,
)
from service.auth.roles import parse_scopes
from service.auth.sessions import Principal
from service.auth.users import create_user, list_users, set_disabled, set_role
from service.errors import Refusal
from service.models import AdminUser, ApiToken, utcnow
from service.state import AppRequest
from service.web.admin.guard import missing_scope, protected
from service.web.bodies import BadBody, parse_json_object
from service.web.params import MAX_ROW_ID, number, row_id

__all__ = ["routes"]

NO_STORE = {"Cache-Control": "no-store"}
MAX_PAGE = 500


async def _body(request: AppRequest, example: str) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadBody(415, "Send a JSON object with Content-Type: application/json.")
    return parse_json_object(await request.body(), example=example)


def _invalid(field: str, message: str) -> Refusal:
    return Refusal(f"{field}: {message}.", status=422, fields={field: message})


def _text(data: dict[str, Any], field: str, *, default: str | None = None) -> str:
    value = data.get(field, default)
    if value is None:
        raise _invalid(field, "is required")
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    return value


def token_json(token: ApiToken, username: str) -> dict[str, Any]:
    now = utcnow()
    state = (
        "revoked"
        if token.revoked_at
        else "expired"
        if token.expires_at and token.expires_at <= now
        else "active"
    )
    return {
        "id": token.id,
        "name": token.name,
        "admin": username,
        "scopes": list(token_scopes(token)),
        "state": state,
        "created_at": token.created_at.isoformat(),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


async def tokens_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    if request.method == "GET":
        rows = [token_json(t, name) for t, name in await list_tokens(db)]
        return JSONResponse({"tokens": rows}, headers=NO_STORE)
    data = await _body(request, '{"name": "nightly export", "scopes": ["read", "export"]}')
    name = _text(data, "name")
    scopes = data.get("scopes")
    if not isinstance(scopes, list):
        raise _invalid("scopes", 'must be a list of scopes, e.g. ["read", "export"]')
    try:
        chosen = parse_scopes(scopes)
    except ValueError as exc:
        raise _invalid("scopes", str(exc)) from None
    for scope in chosen:
        if not principal.can(scope):
            why = missing_scope(principal, scope)
            raise Refusal(f"A token cannot get the '{scope}' scope from you: {why}", status=403)
    days = data.get("expires_in_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
        raise _invalid(
            "expires_in_days", f"must be a whole number from 1 to {MAX_EXPIRY_DAYS}, or null"
        )
    try:
        expires_at = expiry_from_days(days)
    except ValueError as exc:
        raise _invalid("expires_in_days", str(exc).removeprefix("expires_in_days ")) from None
    try:
        value, token = await issue_token(
            db,
            principal.username,
            name,
            scopes=chosen,
            expires_at=expires_at,
            actor=principal.actor,
        )
    except ValueError as exc:
        raise _invalid("name", str(exc)) from None
    except LookupError as exc:  # disabled between the check and now
        raise Refusal(str(exc), status=409) from None
    return JSONResponse(
        {**token_json(token, principal.username), "token": value},
        status_code=201,
        headers=NO_STORE,
    )


async def token_endpoint(request: AppRequest, principal: Principal) -> Response:
    token_id = row_id(str(request.path_params["token_id"]))
    if token_id is None or not await revoke_token(
        request.state["db"], token_id, actor=principal.actor
    ):
        raise Refusal("There is no active token with that id.", status=404)
    return Response(status_code=204)


def admin_json(user: AdminUser) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "disabled": user.disabled_at is not None,
        "disabled_at": user.disabled_at.isoformat() if user.disabled_at else None,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


async def _admin(request: AppRequest, username: str) -> AdminUser:
    for user in await list_users(request.state["db"]):
        if user.username == username:
            return user
    raise Refusal(f"There is no admin named {username!r}.", status=404)


async def admins_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    if request.method == "GET":
        users = [admin_json(u) for u in await list_users(db)]
        return JSONResponse({"admins": users}, headers=NO_STORE)
    data = await _body(request, '{"username": "sam", "password": "…", "role": "editor"}')
    username = _text(data, "username")
    password = _text(data, "password")
    role = _text(data, "role", default="editor")
    try:
        created = await create_user(db, username, password, role=role, actor=principal.actor)
    except ValueError as exc:
        raise Refusal(f"{exc}.", status=422) from None
    return JSONResponse(admin_json(created), status_code=201, headers=NO_STORE)


async def admin_endpoint(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    username = str(request.path_params["username"])
    if request.method == "GET":
        return JSONResponse(admin_json(await _admin(request, username)), headers=NO_STORE)
    data = await _body(request, '{"role": "editor"} or {"disabled": true}')
    unknown = sorted(set(data) - {"role", "disabled"})
    if unknown:
        raise _invalid(unknown[0], "is not something to change; send role or disabled")
    if not data:
        raise Refusal("Send role or disabled (or both).", status=422)
    disabled = data.get("disabled")
    if "disabled" in data and not isinstance(disabled, bool):
        raise _invalid("disabled", "must be true or false")
    try:
        if "role" in data:
            await set_role(db, username, _text(data, "role"), actor=principal.actor)
        if isinstance(disabled, bool):
            await set_disabled(db, username, disabled, actor=principal.actor)
    except LookupError:
        raise Refusal(f"There is no admin named {username!r}.", status=404) from None
    except ValueError as exc:
        raise _invalid("role", str(exc)) from None
    return JSONResponse(admin_json(await _admin(request, username)), headers=NO_STORE)


async def audit_endpoint(request: AppRequest, principal: Principal) -> Response:
    params = request.query_params
    action = params.get("action", "") or None
    if action is not None and action not in ACTIONS:
        raise _invalid("action", f"must be one of {', '.join(ACTIONS)}")
    fmt = params.get("format", "json") or "json"
    if fmt not in {"json", "csv"}:
        raise _invalid("format", "must be json or csv")
    if fmt == "csv":
        return StreamingResponse(
            csv_chunks(request.state["db"], action=action),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="audit-{utcnow():%Y-%m-%d}.csv"',
                **NO_STORE,
            },
        )
    before = _cursor(params.get("before", ""), "before", MAX_ROW_ID)
    limit = _cursor(params.get("limit", ""), "limit", MAX_PAGE) or 50
    page = await list_events(request.state["db"], action=action, before=before, limit=limit)
    return JSONResponse(
        {"events": [event_json(e) for e in page.events], "next_before": page.next_before},
        headers=NO_STORE,
    )


def _cursor(value: str, field: str, most: int) -> int | None:
    if not value:
        return None
    found = number(value, most=most)
    if not found:
        raise _invalid(field, f"must be a whole number from 1 to {most}")
    return found


routes = [
    Route("/api/v1/admin/tokens", protected(tokens_endpoint, "admin"), methods=["GET", "POST"]),
    Route(
        "/api/v1/admin/tokens/{token_id}", protected(token_endpoint, "admin"), methods=["DELETE"]
    ),
    Route("/api/v1/admin/admins", protected(admins_endpoint, "admin"), methods=["GET", "POST"]),
    Route(
        "/api/v1/admin/admins/{username}",
        protected(admin_endpoint, "admin"),
        methods=["GET", "PATCH"],
    ),
    Route("/api/v1/admin/audit", protected(audit_endpoint, "admin"), methods=["GET"]),
]
