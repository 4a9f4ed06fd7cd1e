"""Who may use the admin side, and protection of its forms against cross-site posts.

Browsers send ``Sec-Fetch-Site`` (and ``Origin``) with every POST, so a form post from
another site is recognised without hidden CSRF tokens (the approach of datasette's csrf).
Bearer-token calls carry no ambient credentials and need no such check.

Every protected endpoint needs a scope (see ``service.auth.roles``): ``read`` for a GET,
``write`` for anything else, unless the route names another. The server refuses what the
admin's role or the token's scopes do not allow, whatever the pages show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from service.auth.api_tokens import TokenExpired, check_token
from service.auth.roles import role_scopes
from service.auth.sessions import Principal, find_session
from service.state import AppRequest
from service.web.cors import own_origin
from service.web.refusals import api_error
from service.web.responses import page

__all__ = [
    "Handler",
    "client_address",
    "cookie_name",
    "current_principal",
    "missing_scope",
    "protected",
    "same_site_post",
]

Handler = Callable[[AppRequest], Awaitable[Response]]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def cookie_name(base_url: str) -> str:
    # __Host- cookies are Secure, host-only and Path=/, which browsers enforce.
    return "__Host-nl_admin" if base_url.startswith("https://") else "nl_admin"


def client_address(request: AppRequest) -> str | None:
    """The client's address (behind a trusted proxy, the one it forwarded)."""
    return request.client.host if request.client else None


async def current_principal(request: AppRequest) -> Principal | None:
    """The admin behind the request, or None; TokenExpired for a token past its expiry."""
    state = request.state
    authorization = request.headers.get("authorization", "")
    found: Principal | None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        found = await check_token(state["db"], value.strip())
    else:
        value = request.cookies.get(cookie_name(state["settings"].base_url), "")
        found = await find_session(state["db"], value, state["settings"].admin_idle_timeout)
    return dataclasses.replace(found, client=client_address(request)) if found else None


def missing_scope(principal: Principal, scope: str) -> str:
    """Why ``principal`` may not do what needs ``scope``, naming the scope."""
    if principal.via == "token" and scope in role_scopes(principal.role):
        return f"This API token does not have the '{scope}' scope."
    return (
        f"This needs the '{scope}' permission, which an admin with the role "
        f"'{principal.role}' does not have."
    )


Scope = str | Mapping[str, str] | None


def _needed(scope: Scope, method: str) -> str:
    if isinstance(scope, str):
        return scope
    default = "read" if method in SAFE_METHODS else "write"
    return scope.get(method, default) if scope is not None else default


def same_site_post(request: AppRequest) -> bool:
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in {"same-origin", "none"}
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == own_origin(request.state["settings"].base_url)
    referer = request.headers.get("referer", "")
    return referer.startswith(request.state["settings"].base_url + "/")


def _is_api(request: AppRequest) -> bool:
    return request.url.path.startswith("/api/")


def protected(
    handler: Callable[[AppRequest, Principal], Awaitable[Response]], scope: Scope = None
) -> Handler:
    """Run ``handler`` only for a signed-in admin (pages) or a valid token (API) that has
    ``scope``: one scope, or one per method (a GET needs ``read``, other methods ``write``,
    unless said otherwise)."""

    async def endpoint(request: AppRequest) -> Response:
        try:
            principal = await current_principal(request)
        except TokenExpired as exc:
            return api_error(
                401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="newsletter"'}
            )
        if principal is None:
            if _is_api(request):
                return api_error(
                    401,
                    "Sign in, or send an API token as 'Authorization: Bearer TOKEN'.",
                    headers={"WWW-Authenticate": 'Bearer realm="newsletter"'},
                )
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/admin/login?next={quote(target)}", status_code=303)
        if (
            request.method not in SAFE_METHODS
            and principal.via == "session"
            and not same_site_post(request)
        ):
            message = "This form was sent from another site, so it was refused."
            if _is_api(request):
                return api_error(403, message)
            return page(
                request, "pages/error.html", {"status": 403, "message": message}, status=403
            )
        needed = _needed(scope, request.method)
        if not principal.can(needed):
            message = missing_scope(principal, needed)
            if _is_api(request):
                return api_error(403, message)
            return page(
                request, "pages/error.html", {"status": 403, "message": message}, status=403
            )
        return await handler(request, principal)

    return endpoint
