"""Render one email from its template folder: ``templates/email/<name>/``.

Each folder holds ``subject.txt``, ``body.txt`` and ``body.html``; the result is a
multipart/alternative message with the headers every subscriber email must carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

import jinja2

__all__ = ["EmailRenderer", "MailHeaders", "needs_smtputf8", "wire_bytes"]

_PHRASE_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>"\\]')

# Headers may be 998 characters (RFC 5322). At the usual 78, Python folds a long
# List-Unsubscribe URL into an encoded-word that no mail provider would read as a URL.
_WIRE = SMTP.clone(max_line_length=998)
_WIRE_UTF8 = _WIRE.clone(utf8=True)


def needs_smtputf8(message: EmailMessage) -> bool:
    """An internationalised local part can only travel with SMTPUTF8."""
    return not str(message["To"]).isascii()


def wire_bytes(message: EmailMessage) -> bytes:
    """The message exactly as it goes over SMTP (CRLF line ends, unfolded long URLs)."""
    return message.as_bytes(policy=_WIRE_UTF8 if needs_smtputf8(message) else _WIRE)


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

    def render(self, name: str, context: dict[str, Any], headers: MailHeaders) -> EmailMessage:
        subject = self._env.get_template(f"email/{name}/subject.txt").render(context)
        text = self._env.get_template(f"email/{name}/body.txt").render(context)
        html = self._env.get_template(f"email/{name}/body.html").render(context)

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
