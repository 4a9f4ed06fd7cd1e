"""Render one email from its template folder: ``templates/email/<name>/``.

Each folder holds ``subject.txt``, ``body.txt`` and ``body.html``; the result is a
multipart/alternative message with the headers every subscriber email must carry.

The worker sends hundreds of these a second, and the ``email`` package spends about two
milliseconds on each (header objects, folding, encoding), for messages that differ only in
a few values. So `EmailRenderer.prepare` renders each kind of message once, with
stand-ins for what differs (the links, recipient, Message-ID, date), lets the ``email``
package write that once, and then writes each message from it: the stand-ins replaced,
the bodies quoted-printable encoded by ``binascii``. Whatever the stand-ins cannot carry
as they are (a non-ASCII or quoted recipient, a template that changes a link) goes the
ordinary way, through `EmailRenderer.render`.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Hashable
from dataclasses import dataclass, replace
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from typing import Any

import jinja2
import markupsafe

__all__ = [
    "EmailRenderer",
    "MailHeaders",
    "Outgoing",
    "Prepared",
    "envelope",
    "needs_smtputf8",
    "subject_of",
    "wire_bytes",
]

_PHRASE_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>"\\]')

# Headers may be 998 characters (RFC 5322). At the usual 78, Python folds a long
# List-Unsubscribe URL into an encoded-word that no mail provider would read as a URL.
_WIRE = SMTP.clone(max_line_length=998)
_WIRE_UTF8 = _WIRE.clone(utf8=True)


@dataclass(frozen=True)
class Prepared:
    """A message written out already, as it goes over SMTP (see `EmailRenderer.prepare`)."""

    mail_from: str  # envelope sender
    to: str  # envelope recipient: ASCII
    subject: str
    data: bytes


Outgoing = EmailMessage | Prepared
"""What a mailer sends."""


def needs_smtputf8(message: Outgoing) -> bool:
    """An internationalised local part can only travel with SMTPUTF8."""
    if isinstance(message, Prepared):
        return False  # only ASCII recipients are prepared
    return not str(message["To"]).isascii()


def wire_bytes(message: Outgoing) -> bytes:
    """The message exactly as it goes over SMTP (CRLF line ends, unfolded long URLs)."""
    if isinstance(message, Prepared):
        return message.data
    return message.as_bytes(policy=_WIRE_UTF8 if needs_smtputf8(message) else _WIRE)


def envelope(message: Outgoing) -> tuple[str, str]:
    """The envelope sender and recipient."""
    if isinstance(message, Prepared):
        return message.mail_from, message.to
    return parseaddr(str(message["From"]))[1], parseaddr(str(message["To"]))[1]


def subject_of(message: Outgoing) -> str:
    return message.subject if isinstance(message, Prepared) else str(message["Subject"])


# Stand-ins for what differs from one message to the next: plain letters and digits, so
# that no template escaping and no header or body encoding changes them.
_TO = "newsletterstandinto@standin.invalid"
_MESSAGE_ID = "<newsletterstandinmessageid@standin.invalid>"
_DATE = "newsletterstandindate"
_TEXT = "newsletterstandintextbody"
_HTML = "newsletterstandinhtmlbody"
_URL = "https://standin.invalid/newsletterstandinurl{}end"
# A recipient the stand-in can carry as it is: a dot-atom with an ASCII domain.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_CACHE_SIZE = 256


@dataclass(frozen=True)
class _Skeleton:
    """One kind of message, written once with stand-ins."""

    head: bytes  # everything before the text body, with the header stand-ins
    middle: bytes  # between the text and the HTML body
    tail: bytes  # after the HTML body
    subject: str
    mail_from: str
    text: str  # the rendered bodies, with the URL stand-ins
    html: str
    urls: tuple[str, ...]  # the context's URL keys, in stand-in order


def _qp(body: str) -> bytes:
    """``body`` quoted-printable encoded, with CRLF line ends and a final line end."""
    if not body.endswith("\n"):
        body += "\n"
    encoded = binascii.b2a_qp(body.encode(), istext=True)
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class MailHeaders:
    """Envelope and list headers, fixed when the message was queued."""

    mail_from: str
    to: str
    message_id: str
    date: datetime
    list_name: str
    list_id: str  # "slug.host", RFC 2919
    unsubscribe_url: str


class EmailRenderer:
    def __init__(self, env: jinja2.Environment) -> None:
        self._env = env
        self._templates: dict[str, jinja2.Template] = {}  # looked up once, not per email
        self._skeletons: dict[Hashable, _Skeleton | None] = {}

    def _template(self, path: str) -> jinja2.Template:
        template = self._templates.get(path)
        if template is None:
            template = self._templates[path] = self._env.get_template(path)
        return template

    def _parts(self, name: str, context: dict[str, Any]) -> tuple[str, str, str]:
        return (
            self._template(f"email/{name}/subject.txt").render(context),
            self._template(f"email/{name}/body.txt").render(context),
            self._template(f"email/{name}/body.html").render(context),
        )

    def prepare(
        self,
        name: str,
        kind: Hashable,
        context: dict[str, Any],
        urls: tuple[str, ...],
        headers: MailHeaders,
    ) -> Outgoing:
        """The message `render` would make, written out cheaply when it can be.

        ``kind`` names everything in ``context`` and ``headers`` but the ``urls`` (keys of
        ``context``: each message's own links), the recipient, the Message-ID, the date and
        the List-Unsubscribe URL; messages of one kind share one written-out skeleton.
        """
        values = [context[key] for key in urls]
        plain = (
            _PLAIN_ADDRESS.fullmatch(headers.to) is not None
            and headers.unsubscribe_url.isascii()
            and all(v.isascii() and "\n" not in v for v in (*values, headers.unsubscribe_url))
        )
        key = (name, kind, urls)
        skeleton = self._skeletons.get(key) if plain else None
        if plain and key not in self._skeletons:
            skeleton = self._skeleton(name, context, urls, headers)
            if len(self._skeletons) >= _CACHE_SIZE:
                self._skeletons.clear()
            self._skeletons[key] = skeleton
        if skeleton is None:
            return self.render(name, context, headers)
        text, html = skeleton.text, skeleton.html
        for i, value in enumerate(values):
            text = text.replace(_URL.format(i), value)
            html = html.replace(_URL.format(i), str(markupsafe.escape(value)))
        head = (
            skeleton.head.replace(_TO.encode(), headers.to.encode())
            .replace(_MESSAGE_ID.encode(), headers.message_id.encode())
            .replace(_DATE.encode(), format_datetime(headers.date).encode())
            .replace(_URL.format("u").encode(), headers.unsubscribe_url.encode())
        )
        data = b"".join((head, _qp(text), skeleton.middle, _qp(html), skeleton.tail))
        return Prepared(skeleton.mail_from, headers.to, skeleton.subject, data)

    def _skeleton(
        self, name: str, context: dict[str, Any], urls: tuple[str, ...], headers: MailHeaders
    ) -> _Skeleton | None:
        stand_ins = {key: _URL.format(i) for i, key in enumerate(urls)}
        subject, text, html = self._parts(name, {**context, **stand_ins})
        if any(u not in text or u not in html for u in stand_ins.values()):
            return None  # a template that does more than print a link: the ordinary way
        message = self._message(
            subject,
            _TEXT,
            _HTML,
            replace(
                headers,
                to=_TO,
                message_id=_MESSAGE_ID,
                unsubscribe_url=_URL.format("u"),
            ),
        )
        raw = wire_bytes(message)
        date = format_datetime(headers.date).encode()
        if raw.count(date) != 1:
            return None
        raw = raw.replace(date, _DATE.encode())
        text_at, html_at = raw.find(_TEXT.encode() + b"\r\n"), raw.find(_HTML.encode() + b"\r\n")
        if (
            text_at < 0
            or html_at < 0
            or any(raw.count(s.encode()) != 1 for s in (_TO, _MESSAGE_ID, _DATE, _URL.format("u")))
        ):
            return None
        return _Skeleton(
            head=raw[:text_at],
            middle=raw[text_at + len(_TEXT) + 2 : html_at],
            tail=raw[html_at + len(_HTML) + 2 :],
            subject=str(message["Subject"]),
            mail_from=envelope(message)[0],
            text=text,
            html=html,
            urls=urls,
        )

    def render(self, name: str, context: dict[str, Any], headers: MailHeaders) -> EmailMessage:
        subject, text, html = self._parts(name, context)
        return self._message(subject, text, html, headers)

    def _message(self, subject: str, text: str, html: str, headers: MailHeaders) -> EmailMessage:

        # The To: address is as it travels (wire_address): ASCII but for a local part that
        # only an SMTPUTF8 relay takes, and then the whole message may be UTF-8.
        message = EmailMessage(policy=SMTP if headers.to.isascii() else _WIRE_UTF8)
        message["Subject"] = " ".join(subject.split())
        message["From"] = headers.mail_from
        message["To"] = Address(addr_spec=headers.to) if headers.to.isascii() else headers.to
        message["Date"] = format_datetime(headers.date)
        message["Message-ID"] = headers.message_id
        list_label = _PHRASE_UNSAFE.sub("", headers.list_name).strip()
        message["List-Id"] = f"{list_label} <{headers.list_id}>"
        # RFC 8058: one POST to this URL unsubscribes; no cookies, no confirmation page.
        message["List-Unsubscribe"] = f"<{headers.unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # RFC 3834: no vacation auto-replies to these.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text, cte="quoted-printable")
        message.add_alternative(html, subtype="html", cte="quoted-printable")
        return message
