"""Development mail catcher: every message the service would have sent, readable here.

Mounted only when no SMTP host is configured. Links in the text part are clickable; the
HTML part is shown in a sandboxed frame that cannot run scripts. Emails style their HTML
with style attributes (mail clients ignore much else), so the frame's policy allows the
exact styles of the message shown, by their hashes, and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from html.parser import HTMLParser

from markupsafe import Markup, escape
from sqlalchemy import delete, select
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from service.models import CaughtMail
from service.state import AppRequest
from service.web.middleware import content_security_policy, csp_nonce
from service.web.params import row_id
from service.web.responses import page

__all__ = ["routes"]

_URL = re.compile(r"https?://[^\s<>\"']+")
NO_STORE = {"Cache-Control": "no-store"}


def linkify(text: str) -> Markup:
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        out.append(str(escape(text[last : match.start()])))
        url = escape(match.group(0))
        out.append(f'<a href="{url}">{url}</a>')
        last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped


class _Styles(HTMLParser):
    """Every style attribute value and ``<style>`` element text of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.update(value for name, value in attrs if name == "style" and value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.found.add(data)


MAX_STYLE_HASHES = 200


def style_hashes(html: str) -> list[str]:
    """CSP hash sources for the styles in ``html`` (as 'unsafe-hashes' needs them)."""
    parser = _Styles()
    parser.feed(html)
    parser.close()
    return sorted(
        "'sha256-" + base64.b64encode(hashlib.sha256(value.encode()).digest()).decode() + "'"
        for value in parser.found
    )[:MAX_STYLE_HASHES]


def _parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


async def _load(request: AppRequest) -> CaughtMail:
    mail_id = row_id(str(request.path_params["mail_id"]))
    if mail_id is None:
        raise HTTPException(404, "No such message.")
    async with request.state["db"].read() as session:
        mail = await session.get(CaughtMail, mail_id)
    if mail is None:
        raise HTTPException(404, "No such message.")
    return mail


async def inbox(request: AppRequest) -> Response:
    async with request.state["db"].read() as session:
        mails = (
            await session.scalars(select(CaughtMail).order_by(CaughtMail.id.desc()).limit(200))
        ).all()
    return page(request, "pages/devmail_inbox.html", {"mails": mails}, headers=NO_STORE)


async def show(request: AppRequest) -> Response:
    mail = await _load(request)
    message = _parse(mail.raw)
    text_part = message.get_body(preferencelist=("plain",))
    text = text_part.get_content() if text_part is not None else ""
    headers = [(k, str(v)) for k, v in message.items()]
    return page(
        request,
        "pages/devmail_message.html",
        {"mail": mail, "headers": headers, "text": linkify(text)},
        headers={
            **NO_STORE,
            "Content-Security-Policy": content_security_policy(
                csp_nonce(request.scope), frame_src="'self'"
            ),
        },
    )


async def show_html(request: AppRequest) -> Response:
    mail = await _load(request)
    html_part = _parse(mail.raw).get_body(preferencelist=("html",))
    html = html_part.get_content() if html_part is not None else ""
    hashes = style_hashes(html)
    styles = " ".join(["'unsafe-hashes'", *hashes]) if hashes else "'none'"
    return Response(
        html,
        media_type="text/html",
        headers={
            **NO_STORE,
            # Render the email as-is but powerless: no scripts, no same-origin access, and
            # only the styles it was sent with.
            "Content-Security-Policy": "sandbox allow-popups allow-popups-to-escape-sandbox "
            "allow-top-navigation-by-user-activation; default-src 'none'; "
            f"style-src {styles}; "
            "img-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'",
            "X-Frame-Options": "SAMEORIGIN",
        },
    )


async def clear(request: AppRequest) -> Response:
    async with request.state["db"].write() as session:
        await session.execute(delete(CaughtMail))
    return RedirectResponse("/dev/mail", status_code=303)


routes = [
    Route("/dev/mail", inbox, methods=["GET"]),
    Route("/dev/mail/clear", clear, methods=["POST"]),
    Route("/dev/mail/{mail_id}", show, methods=["GET"]),
    Route("/dev/mail/{mail_id}/html", show_html, methods=["GET"]),
]
