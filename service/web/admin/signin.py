"""Sign-in and sign-out pages for editors."""

from __future__ import annotations

import contextlib

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from service.audit import Actor, along_with, entry
from service.auth.api_tokens import TokenExpired
from service.auth.sessions import end_session, find_session, start_session
from service.auth.users import Throttled, sign_in
from service.state import AppRequest
from service.web.admin.guard import (
    client_address,
    cookie_name,
    current_principal,
    same_site_post,
)
from service.web.responses import page

__all__ = ["routes"]


def _safe_next(value: str) -> str:
    """Only back into the admin side: never an open redirect to another site."""
    if value.startswith("/admin") and not value.startswith("//") and "\\" not in value:
        return value
    return "/admin/"


def _form(
    request: AppRequest,
    *,
    error: str = "",
    username: str = "",
    nxt: str = "/admin/",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return page(
        request,
        "admin/login.html",
        {"error": error, "username": username, "next": nxt},
        status=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
        language="en",
    )


async def login(request: AppRequest) -> Response:
    nxt = _safe_next(request.query_params.get("next", "/admin/"))
    if request.method == "GET":
        with contextlib.suppress(TokenExpired):
            if await current_principal(request) is not None:
                return RedirectResponse(nxt, status_code=303)
        return _form(request, nxt=nxt)
    if not same_site_post(request):
        return _form(
            request, error="This form was sent from another site, so it was refused.", status=403
        )
    form = await request.form(max_files=0, max_fields=10)
    username = str(form.get("username", ""))[:100]
    password = str(form.get("password", ""))[:1000]
    nxt = _safe_next(str(form.get("next", "/admin/")))
    state = request.state
    client = client_address(request)
    try:
        user = await sign_in(state["db"], username, password, client)
    except Throttled as exc:
        minutes = max(1, round(exc.seconds / 60))
        return _form(
            request,
            username=username,
            nxt=nxt,
            status=429,
            error=f"Too many failed sign-ins. Try again in {minutes} minutes.",
            headers={"Retry-After": str(exc.seconds)},
        )
    if user is None:
        return _form(
            request, username=username, nxt=nxt, status=401, error="Wrong username or password."
        )
    settings = state["settings"]
    value = await start_session(
        state["db"],
        user.user_id,
        settings.admin_session_lifetime,
        ip_address=client,
        user_agent=request.headers.get("user-agent"),
    )
    response = RedirectResponse(nxt, status_code=303)
    response.set_cookie(
        cookie_name(settings.base_url),
        value,
        httponly=True,
        samesite="lax",
        secure=settings.base_url.startswith("https://"),
        path="/",
        max_age=int(settings.admin_session_lifetime),
    )
    return response


async def logout(request: AppRequest) -> Response:
    if not same_site_post(request):
        return page(
            request,
            "pages/error.html",
            {"status": 403, "message": "This form was sent from another site."},
            status=403,
        )
    name = cookie_name(request.state["settings"].base_url)
    value = request.cookies.get(name)
    if value:
        db = request.state["db"]
        settings = request.state["settings"]
        who = await find_session(db, value, settings.admin_idle_timeout)
        if who is None:
            await end_session(db, value)
        else:
            actor = Actor(who.username, "session", client_address(request))
            with along_with(entry(actor, "signout")):
                await end_session(db, value)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(
        name, path="/", secure=name.startswith("__Host-"), httponly=True, samesite="lax"
    )
    return response


routes = [
    Route("/admin/login", login, methods=["GET", "POST"]),
    Route("/admin/logout", logout, methods=["POST"]),
]
