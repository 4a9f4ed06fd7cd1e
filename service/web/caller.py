"""Who is asking: the address and user agent a consent record keeps."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from service.subscriptions import RequestOrigin

__all__ = ["caller"]


def caller(request: Request[Any]) -> RequestOrigin:
    """The client's address (the reader's, behind a trusted proxy) and its user agent."""
    client = request.client.host if request.client else None
    return RequestOrigin(ip=client, user_agent=request.headers.get("user-agent"))
