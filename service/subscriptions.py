"""Subscribe, confirm, unsubscribe: one transaction each, the outbox row included.

Subscribe runs in the worker's transaction that takes the signup off the intake
(``service.intake``); confirm and unsubscribe open their own.

A subscription is a small state machine, pending -> confirmed -> unsubscribed -> pending.
Its confirmation nonce is replaced whenever it leaves ``pending``, so an old confirmation
link cannot be replayed. Subscribe does the same visible thing whatever state the address
is in; only what it writes differs.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service import limits
from service.db import Database
from service.emails import Emails
from service.i18n import texts
from service.models import (
    ConsentAction,
    ConsentRecord,
    MailingList,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.settings import Settings
from service.tokens import InvalidToken, Purpose, TokenSigner

__all__ = [
    "LinkTarget",
    "Outcome",
    "RequestOrigin",
    "Signup",
    "Subscriptions",
    "consent_wording",
]


log = logging.getLogger(__name__)


def confirm_wording(mailing_list: MailingList, email: str) -> str:
    """What the confirmation page showed, and the button that was pressed."""
    words = texts(mailing_list.language)
    question = words["confirm_question"].format(email=email, list=mailing_list.name)
    return f'Confirmation page: "{question}" Pressed: "{words["confirm_button"]}".'


def consent_wording(mailing_list: MailingList) -> str:
    """The words shown next to the signup form, recorded with every signup."""
    if mailing_list.consent_text:
        return mailing_list.consent_text
    return texts(mailing_list.language)["consent"].format(list=mailing_list.name)


@dataclass(frozen=True)
class Signup:
    email: str  # already validated and normalised
    name: str | None
    page_url: str | None


@dataclass(frozen=True)
class RequestOrigin:
    """Where a state change came from, as recorded in the consent record."""

    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class LinkTarget:
    """What a valid link points at, for the page that shows it."""

    subscription_id: int
    email: str
    list_name: str
    list_slug: str
    language: str
    status: SubscriptionStatus


class Outcome(enum.Enum):
    QUEUED = "queued"  # an email (confirmation or welcome) is in the outbox
    NOTHING = "nothing"  # already confirmed, or a confirmation went out moments ago
    THROTTLED = "throttled"  # the inbox has had its share of confirmations for now


def new_nonce() -> str:
    return secrets.token_urlsafe(12)


class Subscriptions:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        signer: TokenSigner,
        emails: Emails,
    ) -> None:
        self._db = db
        self._settings = settings
        self._signer = signer
        self._emails = emails

    # Subscribe -------------------------------------------------------------------------

    async def subscribe(
        self,
        session: AsyncSession,
        mailing_list: MailingList,
        signup: Signup,
        origin: RequestOrigin,
        received_at: datetime | None = None,
    ) -> Outcome:
        """Act on a signup inside ``session``; whether an email was queued.

        ``received_at`` is when the reader asked (the consent record's time); the signup
        may be acted on a little later.
        """
        now = utcnow()
        asked_at = received_at or now
        subscriber = await self._subscriber(session, signup, now)
        sub = await self._subscription(session, mailing_list, subscriber, now)
        if sub.status == SubscriptionStatus.CONFIRMED:
            return Outcome.NOTHING  # nothing to do, nothing to tell: the answer is the same
        resend_due = sub.confirmation_sent_at is None or (
            now - sub.confirmation_sent_at >= timedelta(seconds=self._settings.resend_interval)
        )
        if sub.status == SubscriptionStatus.UNSUBSCRIBED:
            sub.status = SubscriptionStatus.PENDING
            sub.confirm_nonce = new_nonce()
            sub.subscribed_at = asked_at
            resend_due = True
        sub.updated_at = now
        session.add(
            self._consent(
                sub,
                ConsentAction.SUBSCRIBE,
                asked_at,
                origin,
                consent_wording(mailing_list),
                "form",
                signup.page_url,
            )
        )
        if not mailing_list.double_opt_in:
            sub.status = SubscriptionStatus.CONFIRMED
            sub.confirmed_at = now
            sub.confirm_nonce = new_nonce()
            session.add(self._emails.welcome(sub, subscriber.email, now))
            return Outcome.QUEUED
        if not resend_due:
            return Outcome.NOTHING
        wait = await session.run_sync(
            limits.hit,
            f"inbox:{limits.canonical_address(subscriber.email)}",
            self._settings.rate_limit_address,
            now,
        )
        if wait is not None:
            log.info(
                "confirmation for subscription %s not sent: the inbox's limit is reached", sub.id
            )
            return Outcome.THROTTLED
        sub.confirmation_sent_at = now
        session.add(self._emails.confirmation(sub, subscriber.email, now))
        return Outcome.QUEUED

    async def _subscriber(self, session: AsyncSession, signup: Signup, now: datetime) -> Subscriber:
        await session.execute(
            _insert_ignore(session, Subscriber).values(
                email=signup.email, name=signup.name, attributes={}, created_at=now
            )
        )
        found = await session.scalar(select(Subscriber).where(Subscriber.email == signup.email))
        assert found is not None
        return found

    async def _subscription(
        self,
        session: AsyncSession,
        mailing_list: MailingList,
        subscriber: Subscriber,
        now: datetime,
    ) -> Subscription:
        await session.execute(
            _insert_ignore(session, Subscription).values(
                list_id=mailing_list.id,
                subscriber_id=subscriber.id,
                status=SubscriptionStatus.PENDING,
                confirm_nonce=new_nonce(),
                created_at=now,
                updated_at=now,
                subscribed_at=now,
            )
        )
        found = await session.scalar(
            select(Subscription)
            .where(Subscription.list_id == mailing_list.id)
            .where(Subscription.subscriber_id == subscriber.id)
            .with_for_update()
        )
        assert found is not None
        return found

    # Links -----------------------------------------------------------------------------

    async def confirm_target(self, token: str) -> LinkTarget | None:
        """The pending subscription a confirmation link may confirm, or None."""
        async with self._db.read() as session:
            found = await self._load(session, token, Purpose.CONFIRM)
        return found[2] if found else None

    async def confirm(self, token: str, origin: RequestOrigin) -> LinkTarget | None:
        now = utcnow()
        async with self._db.write() as session:
            found = await self._load(session, token, Purpose.CONFIRM, lock=True)
            if found is None:
                return None
            sub, mailing_list, target = found
            sub.status = SubscriptionStatus.CONFIRMED
            sub.confirmed_at = now
            sub.updated_at = now
            sub.confirm_nonce = new_nonce()
            session.add(
                self._consent(
                    sub,
                    ConsentAction.CONFIRM,
                    now,
                    origin,
                    confirm_wording(mailing_list, target.email),
                    "confirm-page",
                    None,
                )
            )
        return target

    async def unsubscribe_target(self, token: str) -> LinkTarget | None:
        async with self._db.read() as session:
            found = await self._load(session, token, Purpose.UNSUBSCRIBE)
        return found[2] if found else None

    async def unsubscribe(
        self, token: str, origin: RequestOrigin, *, method: str
    ) -> LinkTarget | None:
        """Unsubscribe; doing it again changes nothing and still succeeds."""
        now = utcnow()
        async with self._db.write() as session:
            found = await self._load(session, token, Purpose.UNSUBSCRIBE, lock=True)
            if found is None:
                return None
            sub, mailing_list, target = found
            if sub.status != SubscriptionStatus.UNSUBSCRIBED:
                sub.status = SubscriptionStatus.UNSUBSCRIBED
                sub.unsubscribed_at = now
                sub.updated_at = now
                sub.confirm_nonce = new_nonce()
                session.add(
                    self._consent(
                        sub,
                        ConsentAction.UNSUBSCRIBE,
                        now,
                        origin,
                        f"Unsubscribed from {mailing_list.name}.",
                        method,
                        None,
                    )
                )
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.subscription_id == sub.id)
                    .where(OutboxMessage.status == OutboxStatus.QUEUED)
                    .values(status=OutboxStatus.CANCELLED, last_error="unsubscribed before sending")
                )
        return LinkTarget(**{**target.__dict__, "status": SubscriptionStatus.UNSUBSCRIBED})

    async def _load(
        self, session: AsyncSession, token: str, purpose: Purpose, *, lock: bool = False
    ) -> tuple[Subscription, MailingList, LinkTarget] | None:
        try:
            claims = self._signer.read(token, purpose, now=utcnow().timestamp())
        except InvalidToken:
            return None
        query = (
            select(Subscription, MailingList, Subscriber.email)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscription.id == claims.subscription_id)
        )
        if lock:
            query = query.with_for_update(of=Subscription)
        row = (await session.execute(query)).first()
        if row is None:
            return None
        sub, mailing_list, email = row
        if purpose is Purpose.CONFIRM and (
            sub.status != SubscriptionStatus.PENDING
            or not secrets.compare_digest(sub.confirm_nonce, claims.nonce)
        ):
            return None
        target = LinkTarget(
            sub.id, email, mailing_list.name, mailing_list.slug, mailing_list.language, sub.status
        )
        return sub, mailing_list, target

    @staticmethod
    def _consent(
        sub: Subscription,
        action: ConsentAction,
        now: datetime,
        origin: RequestOrigin,
        wording: str,
        method: str,
        page_url: str | None,
    ) -> ConsentRecord:
        return ConsentRecord(
            subscription_id=sub.id,
            action=action,
            created_at=now,
            ip_address=origin.ip,
            user_agent=(origin.user_agent or "")[:512] or None,
            page_url=page_url,
            wording=wording,
            method=method,
        )


def _insert_ignore(session: AsyncSession, model: type[Subscriber] | type[Subscription]):  # type: ignore[no-untyped-def]
    """INSERT that silently does nothing when a unique key already exists."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing()
