"""Which sites may call a list's endpoints from their pages, and the CORS headers that say so.

A list names the origins allowed to embed it; the service's own origin (the hosted page) is
always allowed. A request without an ``Origin`` header is not a browser's cross-site call,
so CORS has nothing to say about it.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from starlette.requests import Request

from service.errors import Refusal
from service.models import MailingList
from service.state import AppRequest

__all__ = [
    "REFUSED_HEADERS",
    "OriginRefused",
    "allowed_list",
    "check_origin",
    "origin_allowed",
    "own_origin",
    "response_headers",
]

log = logging.getLogger(__name__)


# What a refused cross-site call is answered with: caches learn the answer depends on the
# Origin, and the calling page may not read it.
REFUSED_HEADERS = {"Vary": "Origin"}


class OriginRefused(Refusal):
    """The calling page's site is not one the list allows."""

    status = 403

    def __init__(self, message: str, mailing_list: MailingList) -> None:
        super().__init__(message)
        self.mailing_list = mailing_list


@functools.lru_cache(maxsize=8)  # asked on every page view, of the one public URL
def own_origin(base_url: str) -> str:
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()


def origin_allowed(request: AppRequest, mailing_list: MailingList) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True
    origin = origin.lower()
    return origin in mailing_list.allowed_origins or (
        origin == own_origin(request.state["settings"].base_url)
    )


def response_headers(request: Request[Any]) -> dict[str, str]:
    """The calling origin may read the answer (the list's rules decide what the answer is)."""
    origin = request.headers.get("origin")
    headers = {"Vary": "Origin"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
        # The box reads a 429's Retry-After to say when to try again.
        headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


async def allowed_list(request: AppRequest) -> MailingList:
    """The list in the path, if it exists and the calling page may use it."""
    slug = request.path_params["slug"]
    mailing_list = await request.state["lists"].get(slug)
    if mailing_list is None:
        raise Refusal(f"There is no list {slug!r}.", status=404)
    check_origin(request, mailing_list)
    return mailing_list


def check_origin(request: AppRequest, mailing_list: MailingList) -> None:
    """OriginRefused unless the calling page may use the list."""
    if not origin_allowed(request, mailing_list):
        origin = request.headers.get("origin", "")[:200]
        log.warning(
            "refused a call for list %s from origin %s (not in its allowed origins)",
            mailing_list.slug,
            origin,
        )
        raise OriginRefused(
            f"This site ({origin}) is not allowed to sign people up to the list "
            f"{mailing_list.slug!r}. Add it to the list's allowed origins.",
            mailing_list,
        )
