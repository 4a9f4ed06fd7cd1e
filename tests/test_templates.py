"""Every template compiles, and every email renders with the headers it must carry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.emails import CONFIRM, WELCOME
from service.i18n import texts
from service.mail.render import EmailRenderer, MailHeaders, wire_bytes
from service.templating import TEMPLATE_DIR, make_environment

ALL = sorted(str(p.relative_to(TEMPLATE_DIR)) for p in TEMPLATE_DIR.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", ALL)
def test_template_compiles(name: str) -> None:
    make_environment().get_template(name)


def test_every_email_folder_is_complete() -> None:
    folders = [p for p in (TEMPLATE_DIR / "email").iterdir() if p.is_dir() and p.name[0] != "_"]
    assert {p.name for p in folders} == {CONFIRM, WELCOME}
    for folder in folders:
        assert {f.name for f in folder.iterdir()} == {"subject.txt", "body.txt", "body.html"}


@pytest.mark.parametrize("name", [CONFIRM, WELCOME])
def test_emails_escape_and_carry_list_headers(name: str) -> None:
    hostile = 'Evil <script>alert(1)</script> "List"'
    context = {
        "list_name": hostile,
        "language": "en",
        "site": "news.example.org",
        "footer": "footer",
        "unsubscribe_url": "https://news.example.org/unsubscribe/t",
        "confirm_url": "https://news.example.org/confirm/t",
        "valid_for": "3 days",
        "t": texts("en"),
    }
    headers = MailHeaders(
        mail_from="Ünïcode Sender <a@example.com>",
        to="r@example.com",
        message_id="<id@example.com>",
        date=datetime(2026, 1, 2, tzinfo=UTC),
        list_name=hostile,
        list_id="daily.news.example.org",
        unsubscribe_url="https://news.example.org/unsubscribe/t",
    )
    message = EmailRenderer(make_environment()).render(name, context, headers)
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "<script>" not in html.get_content() and "&lt;script&gt;" in html.get_content()
    raw = wire_bytes(message)
    assert b"\r\nList-Unsubscribe: <https://news.example.org/unsubscribe/t>\r\n" in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    assert b"Date: Fri, 02 Jan 2026 00:00:00 +0000" in raw
    assert raw.isascii(), "8-bit data only travels encoded"
