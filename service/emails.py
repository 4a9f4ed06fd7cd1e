"""The emails this service sends: what an outbox row holds, and the message built from it.

An outbox row keeps only ids, the nonce and the expiry; the links are signed again when
the message is built, identically every time, so the token itself is never stored.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from service import welcome
from service.i18n import duration, texts
from service.mail.addresses import wire_address
from service.mail.render import EmailRenderer, MailHeaders, Outgoing
from service.models import MailingList, OutboxMessage, OutboxStatus, Subscription
from service.settings import Settings
from service.tokens import Purpose, TokenSigner

__all__ = ["CONFIRM", "WELCOME", "Emails", "welcome_context"]

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
        values = self.confirmation_values(
            subscription.id,
            subscription.confirm_nonce,
            to,
            now,
            page_url=page_url,
            imported=imported,
            added=added,
        )
        return OutboxMessage(**values)

    def welcome(
        self,
        subscription: Subscription,
        to: str,
        now: datetime,
        *,
        page_url: str | None = None,
        name: str | None = None,
    ) -> OutboxMessage:
        """``name``: the subscriber's, for a list's own welcome text that names them."""
        return OutboxMessage(
            **self.welcome_values(subscription.id, to, now, page_url=page_url, name=name)
        )

    def confirmation_values(
        self,
        subscription_id: int,
        nonce: str,
        to: str,
        now: datetime,
        *,
        page_url: str | None = None,
        imported: bool = False,
        added: bool = False,
    ) -> dict[str, Any]:
        """A confirmation's outbox row as column values, for a batch's one INSERT."""
        expires_at = int(now.timestamp() + self._settings.confirm_ttl)
        payload: dict[str, Any] = {"nonce": nonce, "expires_at": expires_at}
        payload.update(_origin(page_url, imported, added))
        return self._values(CONFIRM, subscription_id, to, now, payload)

    def welcome_values(
        self,
        subscription_id: int,
        to: str,
        now: datetime,
        *,
        page_url: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """A welcome email's outbox row as column values."""
        payload = {**_origin(page_url, False), **({"name": name} if name else {})}
        return self._values(WELCOME, subscription_id, to, now, payload)

    def _values(
        self, template: str, sub_id: int, to: str, now: datetime, payload: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "template": template,
            "to_address": to,
            "subscription_id": sub_id,
            "payload": payload,
            "message_id": self.new_message_id(),
            "status": OutboxStatus.QUEUED,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }

    # Building --------------------------------------------------------------------------

    def build(self, row: OutboxMessage, mailing_list: MailingList) -> Outgoing:
        """The message for a row; the same content for the same row, every time."""
        assert row.subscription_id is not None
        unsubscribe_url = self.unsubscribe_url(row.subscription_id)
        # The site the reader was on, which they know, if the list allows it (a page URL is
        # the caller's to choose); else the list's own.
        site = _site(row.payload.get("site"), mailing_list) or self._site
        footer = FOOTERS.get(str(row.payload.get("via", "")), "footer")
        context: dict[str, Any] = {
            "list_name": mailing_list.name,
            "language": mailing_list.language,
            "site": site,
            "footer": footer,
            "unsubscribe_url": unsubscribe_url,
            "t": texts(mailing_list.language),
        }
        urls: tuple[str, ...] = ("unsubscribe_url",)
        if row.template == CONFIRM:
            context["confirm_url"] = self.confirm_url(
                row.subscription_id, row.payload["nonce"], int(row.payload["expires_at"])
            )
            context["valid_for"] = duration(self._settings.confirm_ttl, mailing_list.language)
            urls = ("confirm_url", "unsubscribe_url")
        headers = MailHeaders(
            mail_from=self._settings.mail_from,
            to=wire_address(row.to_address),
            message_id=row.message_id,
            date=row.created_at,
            list_name=mailing_list.name,
            list_id=f"{mailing_list.slug}.{self._site}",
            unsubscribe_url=unsubscribe_url,
        )
        if row.template == WELCOME:  # the list's own text may name the person: rendered
            context.update(welcome_context(mailing_list, row.payload.get("name")))
            return self._renderer.render(row.template, context, headers)
        # Everything but the links and the envelope is the same for every message of a
        # list, its template and the site named: written out once (`EmailRenderer.prepare`).
        kind = (mailing_list.name, mailing_list.language, mailing_list.slug, site, footer)
        return self._renderer.prepare(row.template, kind, context, urls, headers)


def welcome_context(mailing_list: MailingList, name: str | None) -> dict[str, Any]:
    """The list's own welcome text, filled in, for the welcome templates (empty: built-in)."""
    custom = welcome.custom_text(mailing_list)
    if custom is None:
        return {"custom_subject": "", "custom_paragraphs": []}
    subject, body = (welcome.fill(t, list_name=mailing_list.name, name=name) for t in custom)
    return {"custom_subject": subject, "custom_paragraphs": welcome.paragraphs(body)}


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
