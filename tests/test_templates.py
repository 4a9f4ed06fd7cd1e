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


@pytest.mark.parametrize("name", [CONFIRM, WELCOME])
@pytest.mark.parametrize(
    ("language", "list_name", "to"),
    [
        ("en", 'Evil <script>alert(1)</script> "List"', "r.x+tag@example.com"),
        ("de", "Frühstücks-Briefing & Co", "leser@xn--bcher-kva.example"),
        ("fr", "La Lettre", "zoë@example.org"),  # not preparable: written the ordinary way
    ],
)
def test_a_prepared_email_reads_as_the_email_package_writes_it(
    name: str, language: str, list_name: str, to: str
) -> None:
    """The fast path (a skeleton written once, filled in per message) and the email
    package give the reader the same headers, text, HTML and links."""
    from email import message_from_bytes
    from email.policy import default

    renderer = EmailRenderer(make_environment())
    unsubscribe = "https://news.example.org/unsubscribe/" + "u" * 120
    context = {
        "list_name": list_name,
        "language": language,
        "site": "news.example.org",
        "footer": "footer",
        "unsubscribe_url": unsubscribe,
        "confirm_url": "https://news.example.org/confirm/a.b-c_d?x=1&y=2" + "c" * 100,
        "valid_for": "3 days",
        "t": texts(language),
    }
    urls = ("confirm_url", "unsubscribe_url") if name == CONFIRM else ("unsubscribe_url",)
    for n in range(2):  # the first one writes the skeleton, the second one uses it
        headers = MailHeaders(
            mail_from="Ünïcode Sender <a@example.com>",
            to=to,
            message_id=f"<id{n}@example.com>",
            date=datetime(2026, 1, 2, 3, 4, n, tzinfo=UTC),
            list_name=list_name,
            list_id="daily.news.example.org",
            unsubscribe_url=unsubscribe,
        )
        plain = message_from_bytes(
            wire_bytes(renderer.render(name, context, headers)), policy=default
        )
        fast = message_from_bytes(
            wire_bytes(renderer.prepare(name, (language, list_name), context, urls, headers)),
            policy=default,
        )
        assert [(k, str(v)) for k, v in fast.items() if k != "Content-Type"] == [
            (k, str(v)) for k, v in plain.items() if k != "Content-Type"
        ]
        for part in ("plain", "html"):
            mine, theirs = fast.get_body((part,)), plain.get_body((part,))
            assert mine is not None and theirs is not None
            assert mine.get_content() == theirs.get_content()
        assert str(fast["Message-ID"]) == f"<id{n}@example.com>"
