"""Who may use the admin side, and protection of its forms against cross-site posts.

Browsers send ``Sec-Fetch-Site`` (and ``Origin``) with every POST, so a form post from
another site is recognised without hidden CSRF tokens (the approach of datasette's csrf).
Bearer-token calls carry no ambient credentials and need no such check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from service.auth.api_tokens import check_token
from service.auth.sessions import Principal, find_session
from service.state import AppRequest
from service.web.cors import own_origin
from service.web.refusals import api_error
from service.web.responses import page

__all__ = ["Handler", "cookie_name", "current_principal", "protected", "same_site_post"]

Handler = Callable[[AppRequest], Awaitable[Response]]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def cookie_name(base_url: str) -> str:
    # __Host- cookies are Secure, host-only and Path=/, which browsers enforce.
    return "__Host-nl_admin" if base_url.startswith("https://") else "nl_admin"


async def current_principal(request: AppRequest) -> Principal | None:
    state = request.state
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return await check_token(state["db"], value.strip())
    value = request.cookies.get(cookie_name(state["settings"].base_url), "")
    return await find_session(state["db"], value, state["settings"].admin_idle_timeout)


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


def protected(handler: Callable[[AppRequest, Principal], Awaitable[Response]]) -> Handler:
    """Run ``handler`` only for a signed-in admin (pages) or a valid token (API)."""

    async def endpoint(request: AppRequest) -> Response:
        principal = await current_principal(request)
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
        return await handler(request, principal)

    return endpoint
