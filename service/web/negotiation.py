"""What the caller sent and what it wants back: JSON for programs, pages for browsers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

__all__ = ["FORM_TYPES", "media_type", "wants_html", "wants_page"]

FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


def media_type(request: Request[Any]) -> str:
    """The request body's media type, lower case, without parameters ("" if none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def wants_html(request: Request[Any]) -> bool:
    """A browser's form post (the hosted page, or a site's own form): it gets a page back."""
    return media_type(request) in FORM_TYPES and "text/html" in request.headers.get("accept", "")


def wants_page(request: Request[Any]) -> bool:
    """Outside the API, a caller that accepts HTML gets its errors as a page."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )
