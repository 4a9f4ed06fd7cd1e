"""Pages: every HTML response goes through ``page``, in the reader's language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import HTMLResponse

from service.i18n import negotiate, texts
from service.state import AppRequest
from service.web.middleware import csp_nonce

__all__ = ["TOKEN_PAGE_HEADERS", "page"]

# Pages reached through an emailed link: the token in the URL must not leak onward,
# be cached by a shared proxy, or be indexed.
TOKEN_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


def page(
    request: AppRequest,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    language: str | None = None,
) -> HTMLResponse:
    """A page in ``language``, or in the reader's preferred one when no list decides.

    Templates put ``csp_nonce`` on their ``<style>`` and ``<script>`` tags: the page's
    Content-Security-Policy lets nothing else run or style it.
    """
    lang = language or negotiate(request.headers.get("accept-language"))
    templates = request.state["templates"]
    return templates.TemplateResponse(
        cast(Request, request),
        template,
        {"lang": lang, "t": texts(lang), "csp_nonce": csp_nonce(request.scope), **(context or {})},
        status_code=status,
        headers=headers,
    )
