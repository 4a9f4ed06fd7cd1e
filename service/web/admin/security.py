"""Admin pages for the admins themselves: sessions (everyone's own; an owner sees all),
admins and their roles (owners), API tokens (owners) and the audit log (owners).

Every page checks its scope on the server (``protected``); the navigation only shows
what the admin's role allows.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from service.audit import ACTIONS, csv_chunks, list_events
from service.auth.api_tokens import (
    create_token,
    expiry_from_days,
    list_tokens,
    revoke_token,
    token_scopes,
)
from service.auth.roles import ROLES, SCOPES
from service.auth.sessions import Principal, list_sessions, revoke_session
from service.auth.users import (
    LastOwner,
    UserExists,
    create_user,
    list_users,
    set_disabled,
    set_role,
)
from service.models import utcnow
from service.state import AppRequest
from service.web.admin.guard import cookie_name, protected
from service.web.admin.render import admin_page
from service.web.params import MAX_ROW_ID, number, row_id

__all__ = ["routes"]

DONE = {
    "revoked": "Session ended.",
    "token-revoked": "Token revoked.",
    "added": "Admin added.",
    "role": "Role changed.",
    "disabled": "Admin disabled: their sessions ended and their tokens were revoked.",
    "enabled": "Admin enabled. They sign in again; their old tokens stay revoked.",
    "unchanged": "Nothing to change.",
}


def _page(
    request: AppRequest,
    principal: Principal,
    template: str,
    context: dict[str, Any],
    *,
    tab: str,
    status: int = 200,
) -> Response:
    done = DONE.get(request.query_params.get("done", ""), "")
    return admin_page(
        request,
        principal,
        template,
        {"tab": tab, "done": done, **context},
        section="security",
        status=status,
    )


async def _form(request: AppRequest) -> dict[str, list[str]]:
    data = await request.form(max_files=0, max_fields=20)
    return {key: [str(v) for v in data.getlist(key)] for key in data}


def _one(form: dict[str, list[str]], key: str) -> str:
    values = form.get(key) or [""]
    return values[-1].strip()


# Sessions --------------------------------------------------------------------------------


async def sessions_page(request: AppRequest, principal: Principal) -> Response:
    everyone = principal.can("admin")
    sessions = await list_sessions(request.state["db"], None if everyone else principal.user_id)
    return _page(
        request,
        principal,
        "admin/security_sessions.html",
        {"sessions": sessions, "everyone": everyone, "current": principal.session_id},
        tab="sessions",
    )


async def session_revoke(request: AppRequest, principal: Principal) -> Response:
    form = await _form(request)
    wanted = _one(form, "session")
    db = request.state["db"]
    owner = principal.can("admin")
    username = await revoke_session(
        db, wanted, user_id=None if owner else principal.user_id, actor=principal.actor
    )
    if username is None:
        raise HTTPException(404, "There is no such session (it may have ended already).")
    if wanted == principal.session_id:  # signed out of this browser
        response = RedirectResponse("/admin/login", status_code=303)
        name = cookie_name(request.state["settings"].base_url)
        response.delete_cookie(
            name, path="/", secure=name.startswith("__Host-"), httponly=True, samesite="lax"
        )
        return response
    return RedirectResponse("/admin/sessions?done=revoked", status_code=303)


# Admins ----------------------------------------------------------------------------------


async def admins_page(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    error = ""
    status = 200
    form = {"username": "", "role": "editor"}
    if request.method == "POST":
        data = await _form(request)
        form = {"username": _one(data, "username"), "role": _one(data, "role")}
        try:
            await create_user(
                db,
                form["username"],
                (data.get("password") or [""])[-1],
                role=form["role"],
                actor=principal.actor,
            )
        except ValueError as exc:
            error, status = f"Not added: {exc}.", 422
        except UserExists as exc:
            error, status = f"Not added: {exc.message}.", 409
        else:
            return RedirectResponse("/admin/admins?done=added", status_code=303)
    return _page(
        request,
        principal,
        "admin/security_admins.html",
        {"users": await list_users(db), "roles": ROLES, "form": form, "error": error},
        tab="admins",
        status=status,
    )


async def admin_change(request: AppRequest, principal: Principal) -> Response:
    """One button per change: a role chosen, disable, or enable."""
    username = str(request.path_params["username"])
    data = await _form(request)
    action = _one(data, "action")
    db = request.state["db"]
    try:
        if action == "role":
            changed = await set_role(db, username, _one(data, "role"), actor=principal.actor)
            done = "role"
        elif action in {"disable", "enable"}:
            changed = await set_disabled(db, username, action == "disable", actor=principal.actor)
            done = f"{action}d"
        else:
            raise ValueError("choose a role, or disable or enable the admin")
    except LookupError:
        raise HTTPException(404, f"There is no admin named {username!r}.") from None
    except (ValueError, LastOwner) as exc:
        message = exc.message if isinstance(exc, LastOwner) else f"{exc}."
        return _page(
            request,
            principal,
            "admin/security_admins.html",
            {
                "users": await list_users(db),
                "roles": ROLES,
                "form": {"username": "", "role": "editor"},
                "error": message,
            },
            tab="admins",
            status=409 if isinstance(exc, LastOwner) else 422,
        )
    if changed and username == principal.username and action == "disable":
        return RedirectResponse("/admin/login", status_code=303)
    if changed and username == principal.username:  # no longer an owner: not this page
        return RedirectResponse("/admin/sessions?done=role", status_code=303)
    return RedirectResponse(
        f"/admin/admins?done={done if changed else 'unchanged'}", status_code=303
    )


# Tokens ----------------------------------------------------------------------------------


def token_state(expires_at: Any, revoked_at: Any) -> str:
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= utcnow():
        return "expired"
    return "active"


async def tokens_page(request: AppRequest, principal: Principal) -> Response:
    db = request.state["db"]
    error = ""
    created = ""
    status = 200
    form: dict[str, Any] = {"name": "", "scopes": ["read"], "days": ""}
    if request.method == "POST":
        data = await _form(request)
        form = {
            "name": _one(data, "name"),
            "scopes": data.get("scopes", []),
            "days": _one(data, "expires_in_days"),
        }
        try:
            created = await create_token(
                db,
                principal.username,
                form["name"],
                scopes=form["scopes"],
                expires_at=expiry_from_days(form["days"]),
                actor=principal.actor,
            )
        except (ValueError, LookupError) as exc:
            error, status = f"No token made: {exc}.", 422
        else:
            form = {"name": "", "scopes": ["read"], "days": ""}
    rows = [
        {
            "token": token,
            "admin": username,
            "scopes": token_scopes(token),
            "state": token_state(token.expires_at, token.revoked_at),
        }
        for token, username in await list_tokens(db)
    ]
    return _page(
        request,
        principal,
        "admin/security_tokens.html",
        {
            "tokens": rows,
            "scopes": SCOPES,
            "form": form,
            "error": error,
            "created": created,  # shown once, on the page that answers the POST
        },
        tab="tokens",
        status=status,
    )


async def token_revoke(request: AppRequest, principal: Principal) -> Response:
    token_id = row_id(str(request.path_params["token_id"]))
    if token_id is None:
        raise HTTPException(404, "There is no such token.")
    if not await revoke_token(request.state["db"], token_id, actor=principal.actor):
        return RedirectResponse("/admin/tokens?done=unchanged", status_code=303)
    return RedirectResponse("/admin/tokens?done=token-revoked", status_code=303)


# Audit log -------------------------------------------------------------------------------


def _action(request: AppRequest) -> str | None:
    action = request.query_params.get("action", "")
    if action and action not in ACTIONS:
        raise HTTPException(422, f"{action!r} is not an action of the audit log.")
    return action or None


async def audit_page(request: AppRequest, principal: Principal) -> Response:
    action = _action(request)
    before = number(request.query_params.get("before", ""), most=MAX_ROW_ID)
    result = await list_events(request.state["db"], action=action, before=before)
    kept = {"action": action} if action else {}
    return _page(
        request,
        principal,
        "admin/security_audit.html",
        {
            "events": result.events,
            "actions": ACTIONS,
            "action": action or "",
            "older_url": (
                f"/admin/audit?{urlencode({**kept, 'before': result.next_before})}"
                if result.next_before
                else ""
            ),
            "newest_url": f"/admin/audit?{urlencode(kept)}" if before else "",
            "csv_url": f"/admin/audit.csv?{urlencode(kept)}",
        },
        tab="audit",
    )


async def audit_csv(request: AppRequest, principal: Principal) -> Response:
    action = _action(request)
    name = f"audit-{action or 'all'}-{utcnow():%Y-%m-%d}.csv"
    return StreamingResponse(
        csv_chunks(request.state["db"], action=action),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


routes = [
    Route("/admin/sessions", protected(sessions_page, "read"), methods=["GET"]),
    Route("/admin/sessions/revoke", protected(session_revoke, "read"), methods=["POST"]),
    Route("/admin/admins", protected(admins_page, "admin"), methods=["GET", "POST"]),
    Route("/admin/admins/{username}", protected(admin_change, "admin"), methods=["POST"]),
    Route("/admin/tokens", protected(tokens_page, "admin"), methods=["GET", "POST"]),
    Route("/admin/tokens/{token_id}/revoke", protected(token_revoke, "admin"), methods=["POST"]),
    Route("/admin/audit", protected(audit_page, "admin"), methods=["GET"]),
    Route("/admin/audit.csv", protected(audit_csv, "admin"), methods=["GET"]),
]
