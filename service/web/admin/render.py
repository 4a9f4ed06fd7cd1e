"""Every admin page is rendered here: in English, never cached, with the flash message of
the action that led to it."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from service.auth.sessions import Principal
from service.state import AppRequest
from service.web.middleware import content_security_policy, csp_nonce
from service.web.responses import page

__all__ = ["admin_page"]

FLASH = {
    "created": "List created.",
    "saved": "Saved.",
    "unsubscribed": "Unsubscribed.",
    # Webhooks (service.web.admin.webhooks)
    "removed": "Endpoint removed.",
    "test": "A test event is queued; it shows below in a moment.",
    "paused": "Paused: events wait until it is resumed.",
    "resumed": "Resumed: waiting events go out now.",
    "redelivered": "Queued again, with the same webhook-id.",
    "test-started": "Test started: readers now see its variants.",
    "test-ended": "Test ended; its results are kept below.",
    "test-promoted": "Promoted: the box now uses that variant's settings, and the test has ended.",
}


def admin_page(
    request: AppRequest,
    principal: Principal,
    template: str,
    context: dict[str, Any],
    *,
    section: str,
    status: int = 200,
) -> Response:
    flash = FLASH.get(request.query_params.get("done", ""), "")
    return page(
        request,
        template,
        {
            "admin": principal.username,
            "can": principal.scopes,  # what the pages offer: the server checks it again
            "section": section,
            "flash": flash,
            **context,
        },
        status=status,
        language="en",
        headers={
            "Cache-Control": "no-store",
            # The list editor frames its live preview, a page of our own.
            "Content-Security-Policy": content_security_policy(
                csp_nonce(request.scope), frame_src="'self'"
            ),
        },
    )
