"""The emails this service sends: what an outbox row holds, and the message built from it.

An outbox row keeps only ids, the nonce and the expiry; the links are signed again when
the message is built, identically every time, so the token itself is never stored.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from service.i18n import duration, texts
from service.mail.addresses import wire_address
from service.mail.render import EmailRenderer, MailHeaders
from service.models import MailingList, OutboxMessage, Subscription
from service.settings import Settings
from service.tokens import Purpose, TokenSigner

__all__ = ["CONFIRM", "WELCOME", "Emails"]

CONFIRM = "confirm"
WELCOME = "welcome"
# How an address came to be on the list, when not through a form: the footer that says so.
FOOTERS = {"import": "footer_imported", "admin": "footer_added"}
UNSUBSCRIBE_NONCE = "u"


class Emails:
    def __init__(self, settings: Settings, signer: TokenSigner, renderer: EmailRenderer) -> None:
        self._settings = settings
        self._signer = signer
        self._renderer = renderer
        self._site = urlsplit(settings.base_url).hostname or "localhost"
        address = parseaddr(settings.mail_from)[1]
        self._msgid_domain = address.rpartition("@")[2] or self._site

    # Links -----------------------------------------------------------------------------

    def confirm_url(self, subscription_id: int, nonce: str, expires_at: int) -> str:
        token = self._signer.make(Purpose.CONFIRM, subscription_id, nonce, expires_at)
        return f"{self._settings.base_url}/confirm/{token}"

    def unsubscribe_url(self, subscription_id: int) -> str:
        token = self._signer.make(Purpose.UNSUBSCRIBE, subscription_id, UNSUBSCRIBE_NONCE)
        return f"{self._settings.base_url}/unsubscribe/{token}"

    # Queueing --------------------------------------------------------------------------

    def new_message_id(self) -> str:
        return f"<{secrets.token_hex(16)}@{self._msgid_domain}>"

    def confirmation(
        self,
        subscription: Subscription,
        to: str,
        now: datetime,
        *,
        page_url: str | None = None,
        imported: bool = False,
        added: bool = False,
    ) -> OutboxMessage:
        """``page_url``: where the reader signed up, named in the footer; ``imported``: the
        address came in a file, ``added``: an admin added it, and the email says so instead."""
        expires_at = int(now.timestamp() + self._settings.confirm_ttl)
        payload: dict[str, Any] = {"nonce": subscription.confirm_nonce, "expires_at": expires_at}
        origin = _origin(page_url, imported, added)
        return self._row(CONFIRM, subscription, to, now, {**payload, **origin})

    def welcome(
        self, subscription: Subscription, to: str, now: datetime, *, page_url: str | None = None
    ) -> OutboxMessage:
        return self._row(WELCOME, subscription, to, now, _origin(page_url, False))

    def _row(
        self, template: str, sub: Subscription, to: str, now: datetime, payload: dict[str, Any]
    ) -> OutboxMessage:
        return OutboxMessage(
            template=template,
            to_address=to,
            subscription_id=sub.id,
            payload=payload,
            message_id=self.new_message_id(),
            created_at=now,
            next_attempt_at=now,
        )

    # Building --------------------------------------------------------------------------

    def build(self, row: OutboxMessage, mailing_list: MailingList) -> EmailMessage:
        """The message for a row; the same bytes for the same row, every time."""
        assert row.subscription_id is not None
        unsubscribe_url = self.unsubscribe_url(row.subscription_id)
        context: dict[str, Any] = {
            "list_name": mailing_list.name,
            "language": mailing_list.language,
            # The site the reader was on, which they know, if the list allows it (a page URL is
            # the caller's to choose); else the list's own.
            "site": _site(row.payload.get("site"), mailing_list) or self._site,
            "footer": FOOTERS.get(str(row.payload.get("via", "")), "footer"),
            "unsubscribe_url": unsubscribe_url,
            "t": texts(mailing_list.language),
        }
        if row.template == CONFIRM:
            context["confirm_url"] = self.confirm_url(
                row.subscription_id, row.payload["nonce"], int(row.payload["expires_at"])
            )
            context["valid_for"] = duration(self._settings.confirm_ttl, mailing_list.language)
        headers = MailHeaders(
            mail_from=self._settings.mail_from,
            to=wire_address(row.to_address),
            message_id=row.message_id,
            date=row.created_at,
            list_name=mailing_list.name,
            list_id=f"{mailing_list.slug}.{self._site}",
            unsubscribe_url=unsubscribe_url,
        )
        return self._renderer.render(row.template, context, headers)


def _origin(page_url: str | None, imported: bool, added: bool = False) -> dict[str, Any]:
    """How the address came to be on the list, as the email's footer tells it."""
    if imported or added:
        return {"via": "import" if imported else "admin"}
    parts = urlsplit(page_url or "")
    return {"site": f"{parts.scheme}://{parts.netloc}".lower()} if parts.netloc else {}


def _site(origin: str | None, mailing_list: MailingList) -> str:
    """The host of ``origin`` if it is one of the list's sites, else of the list's first."""
    allowed = sorted(mailing_list.allowed_origins or [])
    for candidate in ([origin] if origin in allowed else []) + allowed:
        host = urlsplit(candidate).hostname
        if host:
            return host
    return ""
