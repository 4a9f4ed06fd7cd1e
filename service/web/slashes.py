"""Trailing-slash redirects that stay on this site, whatever the Host header says.

Starlette answers ``/path/`` for a route ``/path`` (and the other way round) with an
absolute URL built from the request's Host header, so a forged Host turned any such
request into a redirect to another site (a poisoned cache or a phishing link away from
harm). Here the redirect is relative: the browser stays where it is.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import Receive, Scope, Send

__all__ = ["relative_slash_redirects"]


def relative_slash_redirects(router: Router) -> None:
    """Replace ``router``'s slash redirects with relative ones (307, the query kept)."""
    router.redirect_slashes = False
    not_found = router.default

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = _other_form(scope["path"])
            if target is not None:
                probe = {**scope, "path": target}
                if any(route.matches(probe)[0] is not Match.NONE for route in router.routes):
                    query = scope.get("query_string", b"").decode("latin-1")
                    location = target + (f"?{query}" if query else "")
                    await RedirectResponse(location, status_code=307)(scope, receive, send)
                    return
        await not_found(scope, receive, send)

    router.default = default


def _other_form(path: str) -> str | None:
    """The path with its trailing slash removed, or one added; None where no redirect may
    go: the root, and anything that would start with ``//`` (another host to a browser)."""
    if path == "/" or path.startswith("//"):
        return None
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    if not other.startswith("/") or other.startswith("//"):
        return None
    return other
