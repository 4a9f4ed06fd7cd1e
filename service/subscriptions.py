"""The subscription state machine: every change of a subscription's status is made here.

A subscription is pending -> confirmed -> unsubscribed -> pending, or erased. Whoever asks
(a reader's signup, the confirmation page, the unsubscribe page or a mail provider's
one-click POST, an admin, an import), the change, its consent record, the rotation of the
confirmation nonce and the cancelling of queued mail happen in this module and nowhere
else.

- Subscribe runs in the worker's transaction that takes the signup off the intake
  (``service.intake``); confirm and unsubscribe open their own. Subscribe does the same
  visible thing whatever state the address is in; only what it writes differs.
- The confirmation nonce is replaced whenever a subscription leaves ``pending``, so an old
  confirmation link cannot be replayed.
- An opt-out wins: only the person's own signup takes an unsubscribed address back to
  pending. An admin can only unsubscribe; an import adds subscriptions that do not exist
  yet (``add_imported``) and otherwise only unsubscribes, where its file says the person
  opted out (``unsubscribe_by_import``).
- An admin adds people to a list (``add_by_admin``, by hand or as a bulk action): a
  confirmation email, unless the admin records the evidence of their consent; never
  back onto a list they left.
- Erasure deletes the person and everything about them and keeps a hash of the address,
  so it stays suppressed.
"""

from __future__ import annotations

import enum
import functools
import logging
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from service import blocklist, limits, welcome
from service.box_counts import count_confirmed, count_confirmed_in_batch
from service.db import Database, Write, Writes, insert_or_ignore, run
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
    Suppression,
    utcnow,
)
from service.settings import Rate, Settings
from service.suppressions import AddressKeys
from service.tokens import InvalidToken, Purpose, TokenSigner
from service.wakeup import Wakeup
from service.webhooks import events

__all__ = [
    "Asked",
    "Imported",
    "LinkTarget",
    "Outcome",
    "RequestOrigin",
    "Signup",
    "Subscriptions",
    "add_by_admin",
    "add_imported",
    "consent_wording",
    "erase",
    "erase_many",
    "unsubscribe_by_admin",
    "unsubscribe_by_import",
    "unsubscribe_many_by_admin",
]


log = logging.getLogger(__name__)


def confirm_wording(mailing_list: MailingList, email: str) -> str:
    """What the confirmation page showed, and the button that was pressed."""
    words = texts(mailing_list.language)
    question = words["confirm_question"].format(email=email, list=mailing_list.name)
    return f'Confirmation page: "{question}" Pressed: "{words["confirm_button"]}".'


def resubscribe_wording(mailing_list: MailingList) -> str:
    """What the old confirmation link's page showed after an unsubscribe, and its button."""
    words = texts(mailing_list.language)
    question = words["resubscribe_text"].format(list=mailing_list.name)
    button = words["resubscribe_button"]
    return f'Confirmation link, after unsubscribing: "{question}" Pressed: "{button}".'


def consent_wording(mailing_list: MailingList, language: str | None = None) -> str:
    """The words shown next to the signup form, recorded with every signup.

    A list's own consent text is shown as written; the default wording is in ``language``
    (a page that asks for the box in another language), else the list's.
    """
    if mailing_list.consent_text:
        return mailing_list.consent_text
    return texts(language or mailing_list.language)["consent"].format(list=mailing_list.name)


@dataclass(frozen=True)
class Signup:
    email: str  # already validated and normalised
    name: str | None
    page_url: str | None
    language: str | None = None  # the form's, when not the list's (the consent it showed)
    box_source: str | None = None  # where the box was, if it came from the box (box_counts)


@dataclass(frozen=True)
class RequestOrigin:
    """Where a state change came from, as recorded in the consent record."""

    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class Asked:
    """One signup for `Subscriptions.subscribe_many` to act on."""

    mailing_list: MailingList
    signup: Signup
    origin: RequestOrigin
    received_at: datetime | None = None  # when the reader asked: the consent record's time
    wording: str | None = None  # what the person was shown, if not the signup form's words
    method: str = "form"


@dataclass
class _Sub:
    """A subscription as `subscribe_many` reads it and changes it in memory."""

    id: int
    list_id: int
    subscriber_id: int
    status: SubscriptionStatus
    confirm_nonce: str
    created_at: datetime
    updated_at: datetime
    subscribed_at: datetime
    confirmation_sent_at: datetime | None
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    box_source: str | None = None  # where the box was (service.box_counts)

    def changes(self) -> dict[str, Any]:
        """The parameters of `_update_subscriptions`."""
        return {f"b_{key}": getattr(self, key) for key in ("id", *_CHANGED)}


@dataclass(frozen=True)
class LinkTarget:
    """What a valid link points at, for the page that shows it."""

    subscription_id: int
    email: str
    list_name: str
    list_slug: str
    language: str
    status: SubscriptionStatus
    changed: bool = False  # this request made the change (a repeat is not counted twice)
    superseded: bool = False  # a pending signup's older link: a newer email has the one
    double_opt_in: bool = True


@dataclass(frozen=True)
class Imported:
    """A subscription an import asks for, as the file describes it."""

    subscriber_id: int
    email: str
    in_file: str  # confirmed, pending or unsubscribed
    subscribed_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    page_url: str | None = None  # where the person signed up, when the file says
    optin_ip: str | None = None  # where from, when the file says (Mailchimp's OPTIN_IP)
    confirm_ip: str | None = None  # and where from they confirmed (CONFIRM_IP)
    optin_user_agent: str | None = None  # our own export's evidence columns, read back
    optin_wording: str | None = None
    confirm_user_agent: str | None = None
    confirm_wording: str | None = None


class Outcome(enum.Enum):
    QUEUED = "queued"  # an email (confirmation or welcome) is in the outbox
    NOTHING = "nothing"  # already confirmed, or a confirmation went out moments ago
    THROTTLED = "throttled"  # the inbox has had its share of confirmations for now


def new_nonce() -> str:
    return secrets.token_urlsafe(12)


class Subscriptions:
    """The reader's side: signups, and the pages behind the links in emails."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        signer: TokenSigner,
        emails: Emails,
        wakeup: Wakeup | None = None,
        *,
        addresses: AddressKeys,
    ) -> None:
        self._wakeup = wakeup or Wakeup()  # set: mail was queued
        self._addresses = addresses
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
        *,
        wording: str | None = None,
        method: str = "form",
    ) -> Outcome:
        """Act on one signup inside ``session``; whether an email was queued (see
        `subscribe_many`)."""
        asked = Asked(mailing_list, signup, origin, received_at, wording, method)
        [outcome] = await run(session, self.subscribe_many([asked], utcnow()))
        return outcome

    def subscribe_many(self, batch: Sequence[Asked], now: datetime) -> Writes[list[Outcome]]:
        """Act on a batch of signups in the caller's transaction; one outcome each, in order.

        A few set-based statements whatever the batch's size (a batch of writes, see
        `service.db.batch`): add the subscribers and subscriptions that are missing, read
        (and on PostgreSQL lock) them, decide each signup in order in memory, count the
        inboxes' limits in one statement, then write the changes, the consent records and
        the emails, one statement each. Each signup has the same visible effect whatever
        state its address is in; the same address twice in a batch is two signups, one
        after the other.
        """
        if not batch:
            return []
        emails = sorted({a.signup.email for a in batch})  # one order: concurrent inserts
        names: dict[str, str | None] = {}
        for a in batch:
            names.setdefault(a.signup.email, a.signup.name)
        yield Write(
            _add_subscribers,
            [{"email": e, "name": names[e], "attributes": {}, "created_at": now} for e in emails],
        )
        ids = {row.email: row.id for row in (yield Write(_SUBSCRIBER_IDS, {"emails": emails}))}
        pairs = sorted({(a.mailing_list.id, ids[a.signup.email]) for a in batch})
        yield Write(
            _add_subscriptions,
            [
                {
                    "list_id": list_id,
                    "subscriber_id": subscriber_id,
                    "status": SubscriptionStatus.PENDING,
                    "confirm_nonce": new_nonce(),
                    "created_at": now,
                    "updated_at": now,
                    "subscribed_at": now,
                    "confirmation_sent_at": None,
                    "confirmed_at": None,
                    "unsubscribed_at": None,
                }
                for list_id, subscriber_id in pairs
            ],
        )
        wanted = set(pairs)
        subs: dict[tuple[int, int], _Sub] = {}
        subscriber_ids = sorted({s for _, s in pairs})
        for row in (yield Write(_SUBSCRIPTIONS_OF, {"ids": subscriber_ids})):
            if (row.list_id, row.subscriber_id) in wanted:
                subs[(row.list_id, row.subscriber_id)] = _Sub(**row._mapping)
        outcomes: list[Outcome | None] = [None] * len(batch)
        consents: list[dict[str, object]] = []
        mail: list[dict[str, object]] = []
        changed: dict[int, _Sub] = {}
        told: dict[str, list[int]] = {events.CONFIRMED: [], events.PENDING: []}  # webhooks
        todo = list(range(len(batch)))
        while todo:  # a round takes each subscription's next signup: usually one round
            this_round: list[int] = []
            later: list[int] = []
            seen: set[tuple[int, int]] = set()
            for i in todo:
                key = (batch[i].mailing_list.id, ids[batch[i].signup.email])
                (later if key in seen else this_round).append(i)
                seen.add(key)
            todo = later
            inbox: dict[int, str] = {}  # signups whose confirmation asks the inbox's limit
            for i in this_round:
                a = batch[i]
                sub = subs[(a.mailing_list.id, ids[a.signup.email])]
                outcome = self._decide(a, sub, now, consents, mail, changed, told)
                if outcome is None:
                    inbox[i] = f"inbox:{self._addresses.counter(a.signup.email)}"
                else:
                    outcomes[i] = outcome
            if not inbox:
                continue
            rates = self._settings.rate_limit_address
            waits = yield from limits.add([(key, 1, rates) for key in inbox.values()], now)
            taken: Counter[str] = Counter()
            for i, counter in inbox.items():
                wait = waits[counter][taken[counter]]
                taken[counter] += 1
                a = batch[i]
                sub = subs[(a.mailing_list.id, ids[a.signup.email])]
                if wait is not None:
                    log.info(
                        "confirmation for subscription %s not sent: the inbox's limit is reached",
                        sub.id,
                    )
                    outcomes[i] = Outcome.THROTTLED
                    continue
                sub.confirmation_sent_at = now
                changed[sub.id] = sub
                mail.append(
                    self._emails.confirmation_values(
                        sub.id, sub.confirm_nonce, a.signup.email, now, page_url=a.signup.page_url
                    )
                )
                told[events.PENDING].append(sub.id)
                outcomes[i] = Outcome.QUEUED
        if changed:
            yield Write(_update_subscriptions, [sub.changes() for sub in changed.values()])
        if consents:
            yield Write(insert(ConsentRecord), consents)
        if mail:
            yield Write(insert(OutboxMessage), mail)
        for event_type, sub_ids in told.items():
            yield from events.subscriptions_changed_in_batch(event_type, sub_ids, now)
        for sub_id in told[events.CONFIRMED]:  # a single opt-in list: confirmed at once
            confirmed = changed[sub_id]
            yield from count_confirmed_in_batch(
                confirmed.list_id, confirmed.box_source, self._settings.box_pages_per_day
            )
        return [o if o is not None else Outcome.NOTHING for o in outcomes]

    def _decide(
        self,
        a: Asked,
        sub: _Sub,
        now: datetime,
        consents: list[dict[str, object]],
        mail: list[dict[str, object]],
        changed: dict[int, _Sub],
        told: dict[str, list[int]],
    ) -> Outcome | None:
        """One signup's change to ``sub``; None when a confirmation is due and the inbox's
        limit decides (`subscribe_many` counts those together)."""
        if sub.status == SubscriptionStatus.CONFIRMED:
            return Outcome.NOTHING  # nothing to do, nothing to tell: the answer is the same
        asked_at = a.received_at or now
        resend_due = sub.confirmation_sent_at is None or (
            now - sub.confirmation_sent_at >= timedelta(seconds=self._settings.resend_interval)
        )
        if sub.status == SubscriptionStatus.UNSUBSCRIBED:
            # The person asks again: the one way back from an opt-out.
            sub.status = SubscriptionStatus.PENDING
            sub.confirm_nonce = new_nonce()
            sub.subscribed_at = asked_at
            resend_due = True
        sub.updated_at = now
        if a.signup.box_source:
            sub.box_source = a.signup.box_source  # the latest signup's box gets the credit
        changed[sub.id] = sub
        wording = a.wording or consent_wording(a.mailing_list, a.signup.language)
        consents.append(
            _consent_values(
                sub.id,
                ConsentAction.SUBSCRIBE,
                asked_at,
                wording,
                a.method,
                a.origin,
                a.signup.page_url,
            )
        )
        if not a.mailing_list.double_opt_in:
            sub.status = SubscriptionStatus.CONFIRMED
            sub.confirmed_at = now
            sub.confirm_nonce = new_nonce()
            mail.append(
                self._emails.welcome_values(
                    sub.id, a.signup.email, now, page_url=a.signup.page_url, name=a.signup.name
                )
            )
            told[events.CONFIRMED].append(sub.id)
            return Outcome.QUEUED
        if not resend_due:
            return Outcome.NOTHING
        return None

    # Links -----------------------------------------------------------------------------

    async def confirm_target(self, token: str) -> LinkTarget | None:
        """What a confirmation link points at now, or None if it is not a valid link.

        ``status`` says which: ``pending``, the subscription it may confirm; ``confirmed``,
        done already (a reload, a second tab, the email opened again: a harmless repeat,
        even after the link's expiry); ``unsubscribed``, the person has opted out since.
        """
        async with self._db.read() as session:
            found = await self._load(session, token, Purpose.CONFIRM)
        return found[2] if found else None

    async def confirm(self, token: str, origin: RequestOrigin) -> LinkTarget | None:
        """Confirm the pending subscription of a valid link; a repeat changes nothing and is
        still a success. None for an invalid link, or one whose person has opted out since
        (only a new signup takes them back)."""
        now = utcnow()
        async with self._db.write() as session:
            found = await self._load(session, token, Purpose.CONFIRM, lock=True)
            if found is None:
                return None
            sub, mailing_list, target = found
            if target.superseded or sub.status != SubscriptionStatus.PENDING:
                return target if sub.status != SubscriptionStatus.UNSUBSCRIBED else None
            first_time = sub.confirmed_at is None  # a re-confirmation gets no welcome
            _to_confirmed(sub, now)
            if first_time and welcome.enabled(mailing_list):
                name = await session.scalar(
                    select(Subscriber.name).where(Subscriber.id == sub.subscriber_id)
                )
                session.add(self._emails.welcome(sub, target.email, now, name=name))
            await events.subscriptions_changed(session, events.CONFIRMED, [sub.id], now)
            await count_confirmed(
                session, sub.list_id, sub.box_source, self._settings.box_pages_per_day
            )
            session.add(
                _consent(
                    sub.id,
                    ConsentAction.CONFIRM,
                    now,
                    confirm_wording(mailing_list, target.email),
                    "confirm-page",
                    origin,
                )
            )
        self._wakeup.set()  # a welcome or a webhook may be waiting
        return LinkTarget(
            **{**target.__dict__, "status": SubscriptionStatus.CONFIRMED, "changed": True}
        )

    async def subscribe_again(self, token: str, origin: RequestOrigin) -> LinkTarget | None:
        """The person asks again, from the confirmation link of a subscription they left: a
        new signup of theirs (double opt-in as the list has it, the inbox's limit as ever),
        with what the link's page showed in the consent record. A repeat changes nothing.
        None for a link that is not valid."""
        async with self._db.write() as session:
            found = await self._load(session, token, Purpose.CONFIRM, lock=True)
            if found is None:
                return None
            sub, mailing_list, target = found
            if sub.status != SubscriptionStatus.UNSUBSCRIBED:
                return target
            if await blocklist.blocked(session, [target.email]):
                # As for any blocked signup: the usual answer, nothing done or sent.
                log.info("subscription %s not renewed: the address is blocklisted", sub.id)
                return LinkTarget(**{**target.__dict__, "changed": True})
            signup = Signup(email=target.email, name=None, page_url=None)
            outcome = await self.subscribe(
                session,
                mailing_list,
                signup,
                origin,
                wording=resubscribe_wording(mailing_list),
                method="confirm-link",
            )
        if outcome is Outcome.QUEUED:
            self._wakeup.set()
        return LinkTarget(**{**target.__dict__, "changed": True})

    async def unsubscribe_target(self, token: str) -> LinkTarget | None:
        async with self._db.read() as session:
            found = await self._load(session, token, Purpose.UNSUBSCRIBE)
        return found[2] if found else None

    async def unsubscribe(
        self, token: str, origin: RequestOrigin, *, method: str
    ) -> LinkTarget | None:
        """Unsubscribe through a link (``method``: the page, or RFC 8058 one-click).

        Doing it again changes nothing and still succeeds.
        """
        now = utcnow()
        async with self._db.write() as session:
            found = await self._load(session, token, Purpose.UNSUBSCRIBE, lock=True)
            if found is None:
                return None
            sub, mailing_list, target = found
            changed = await _to_unsubscribed(
                session, sub, now, f"Unsubscribed from {mailing_list.name}.", method, origin
            )
        return LinkTarget(
            **{**target.__dict__, "status": SubscriptionStatus.UNSUBSCRIBED, "changed": changed}
        )

    async def _load(
        self, session: AsyncSession, token: str, purpose: Purpose, *, lock: bool = False
    ) -> tuple[Subscription, MailingList, LinkTarget] | None:
        try:
            # Expiry is checked below: it only matters while there is something to confirm.
            claims = self._signer.read(token, purpose, now=0)
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
        expired = bool(claims.expires_at) and utcnow().timestamp() >= claims.expires_at
        waiting = purpose is Purpose.CONFIRM and sub.status == SubscriptionStatus.PENDING
        if waiting and expired:
            return None  # an expired link to a signup still waiting: a new signup is needed
        target = LinkTarget(
            sub.id,
            email,
            mailing_list.name,
            mailing_list.slug,
            mailing_list.language,
            sub.status,
            superseded=waiting and not secrets.compare_digest(sub.confirm_nonce, claims.nonce),
            double_opt_in=mailing_list.double_opt_in,
        )
        return sub, mailing_list, target

    async def erase(self, subscriber_id: int, admin: str) -> bool:
        """Erase a person (see `erase`)."""
        return await erase(self._db, subscriber_id, admin, self._addresses)

    @property
    def addresses(self) -> AddressKeys:
        """The keyed hashes of inboxes: tombstones and counters (``service.suppressions``)."""
        return self._addresses


# The admin's side ------------------------------------------------------------------------


async def unsubscribe_by_admin(db: Database, subscription_id: int, admin: str) -> bool:
    """Unsubscribe on someone's behalf (a request by phone or letter); recorded as such.

    False if there is no such subscription; doing it again changes nothing.
    """
    now = utcnow()
    async with db.write() as session:
        sub = await session.scalar(
            select(Subscription).where(Subscription.id == subscription_id).with_for_update()
        )
        if sub is None:
            return False
        await _to_unsubscribed(session, sub, now, f"Unsubscribed by admin {admin}.", "admin")
    return True


async def unsubscribe_many_by_admin(
    session: AsyncSession, subscription_ids: Sequence[int], admin: str, now: datetime
) -> set[int]:
    """Unsubscribe these subscriptions on an admin's behalf (a bulk action), inside
    ``session``; the ids of those that changed (those unsubscribed already are left)."""
    changed: set[int] = set()
    for start in range(0, len(subscription_ids), 500):
        found = (
            await session.execute(
                select(Subscription.id)
                .where(
                    Subscription.id.in_(subscription_ids[start : start + 500]),
                    Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
                )
                .with_for_update()
            )
        ).all()
        ids = [sub_id for (sub_id,) in found]
        await _unsubscribe_many(
            session, {sub_id: f"Unsubscribed by admin {admin}." for sub_id in ids}, "admin", now
        )
        changed.update(ids)
    return changed


async def erase(db: Database, subscriber_id: int, admin: str, addresses: AddressKeys) -> bool:
    """Delete the person and all their data; keep only a keyed hash of their inbox."""
    return bool(await erase_many(db, [subscriber_id], admin, addresses))


async def erase_many(
    db: Database, subscriber_ids: Sequence[int], admin: str, addresses: AddressKeys
) -> list[str]:
    """Erase these people (`erase`), 500 to a transaction; the addresses erased (for the
    page that says whom it erased; they are kept nowhere)."""
    erased: list[str] = []
    for start in range(0, len(subscriber_ids), 500):
        chunk = list(subscriber_ids[start : start + 500])
        async with db.write() as session:
            people = (
                await session.execute(
                    select(Subscriber.id, Subscriber.email).where(Subscriber.id.in_(chunk))
                )
            ).all()
            if not people:
                continue
            ids = [sid for sid, _ in people]
            digests = {addresses.tombstone(email) for _, email in people}
            present = set(
                await session.scalars(
                    select(Suppression.email_hash).where(Suppression.email_hash.in_(digests))
                )
            )
            for digest in sorted(digests - present):
                session.add(Suppression(email_hash=digest, reason=f"erased by admin {admin}"))
            for sid in ids:  # before their rows go: the webhooks' events about them too
                await events.erased(session, sid, utcnow())
            sub_ids = select(Subscription.id).where(Subscription.subscriber_id.in_(ids))
            await session.execute(
                delete(OutboxMessage).where(OutboxMessage.subscription_id.in_(sub_ids))
            )
            await session.execute(
                delete(ConsentRecord).where(ConsentRecord.subscription_id.in_(sub_ids))
            )
            await session.execute(delete(Subscription).where(Subscription.subscriber_id.in_(ids)))
            await session.execute(delete(Subscriber).where(Subscriber.id.in_(ids)))
            erased.extend(email for _, email in people)
    return erased


async def add_by_admin(
    session: AsyncSession,
    mailing_list: MailingList,
    people: Sequence[tuple[int, str]],
    *,
    evidence: str,
    admin: str,
    emails: Emails,
    now: datetime,
    cap: tuple[Rate, ...] = (),
) -> tuple[dict[int, SubscriptionStatus], dict[int, SubscriptionStatus]]:
    """Add people ``(subscriber id, email)`` to a list on an admin's behalf; the statuses
    of those added, and of those who were on the list already (left exactly as they are:
    an opt-out wins, only the person can subscribe again).

    With ``evidence`` (where, when and how the person consented, in the admin's words) they
    are confirmed at once and the consent record keeps it; without, each gets a
    confirmation email (following the service-wide cap, as imports do) and stays pending
    until they click.
    """
    evidence = evidence.strip()
    ids = [subscriber_id for subscriber_id, _ in people]
    existing: dict[int, SubscriptionStatus] = {}
    for start in range(0, len(ids), 500):
        on_list = await session.execute(
            select(Subscription.subscriber_id, Subscription.status).where(
                Subscription.list_id == mailing_list.id,
                Subscription.subscriber_id.in_(ids[start : start + 500]),
            )
        )
        existing.update({sid: status for sid, status in on_list})
    fresh = [(sid, email) for sid, email in dict(people).items() if sid not in existing]
    status = SubscriptionStatus.CONFIRMED if evidence else SubscriptionStatus.PENDING
    added: dict[int, SubscriptionStatus] = {}
    confirmed_ids: list[int] = []  # subscription ids, for the webhooks
    pending_ids: list[int] = []
    for start in range(0, len(fresh), 500):
        chunk = fresh[start : start + 500]
        created = {
            subscriber_id: (sub_id, nonce)
            for sub_id, subscriber_id, nonce in await session.execute(
                insert_or_ignore(session, Subscription)
                .values(
                    [
                        {
                            "list_id": mailing_list.id,
                            "subscriber_id": sid,
                            "status": status,
                            "confirm_nonce": new_nonce(),
                            "created_at": now,
                            "updated_at": now,
                            "subscribed_at": now,
                            "confirmed_at": now if evidence else None,
                            "confirmation_sent_at": None if evidence else now,
                            "unsubscribed_at": None,
                        }
                        for sid, _ in chunk
                    ]
                )
                .returning(Subscription.id, Subscription.subscriber_id, Subscription.confirm_nonce)
            )
        }
        pending = 0 if evidence else len(created)
        times = iter(await run(session, limits.reserve(limits.CONFIRMATIONS, pending, cap, now)))
        for sid, email in chunk:
            found = created.get(sid)
            if found is None:  # joined at this very moment by other means: left as they are
                continue
            sub_id, nonce = found
            added[sid] = status
            (confirmed_ids if evidence else pending_ids).append(sub_id)
            if evidence:
                wording = f"Added as confirmed by admin {admin}. Consent evidence: {evidence}"
                session.add(_consent(sub_id, ConsentAction.CONFIRM, now, wording, "admin"))
                continue
            wording = f"Added by admin {admin}; a confirmation email was queued."
            session.add(_consent(sub_id, ConsentAction.SUBSCRIBE, now, wording, "admin"))
            session.add(
                emails.confirmation(
                    Subscription(id=sub_id, confirm_nonce=nonce), email, next(times), added=True
                )
            )
    await events.subscriptions_changed(
        session, events.CONFIRMED, confirmed_ids, now, method="admin"
    )
    await events.subscriptions_changed(session, events.PENDING, pending_ids, now, method="admin")
    return added, existing


# Imports ---------------------------------------------------------------------------------


def _imported_status(in_file: str, confirmed: bool) -> SubscriptionStatus:
    if in_file == "unsubscribed":
        return SubscriptionStatus.UNSUBSCRIBED  # a migration keeps its opt-outs
    if confirmed and in_file == "confirmed":
        return SubscriptionStatus.CONFIRMED  # on the admin's word
    return SubscriptionStatus.PENDING  # never confirmed: a confirmation email


async def add_imported(
    session: AsyncSession,
    mailing_list: MailingList,
    rows: Sequence[Imported],
    *,
    confirmed: bool,
    admin: str,
    source: str,
    reason: str,
    emails: Emails | None,
    now: datetime,
    cap: tuple[Rate, ...] = (),
) -> tuple[dict[int, SubscriptionStatus], set[int]]:
    """Add these subscriptions to the list, in one statement; ``{subscriber id: status}``,
    and the subscriber ids whose confirmation email waits for the cap.

    Rows unsubscribed in the file are recorded as unsubscribed; rows confirmed in the file
    are confirmed if ``confirmed`` (the admin's word: the consent record keeps ``reason``);
    every other row is pending, with a confirmation email queued. The emails follow the
    service-wide confirmation cap ``cap``, counted like the signups' (``limits.CONFIRMATIONS``):
    those the cap has room for now are due now, the others are counted in the next windows
    with room and wait in the outbox until those begin. A subscriber already on
    the list (even one who joined a moment ago by other means) is left exactly as they are
    and is missing from the answer: adding never changes a subscription, so an opt-out
    wins.
    """
    statuses = [_imported_status(row.in_file, confirmed) for row in rows]
    values: list[dict[str, object]] = []
    for row, status in zip(rows, statuses, strict=True):
        value: dict[str, object] = {
            "list_id": mailing_list.id,
            "subscriber_id": row.subscriber_id,
            "status": status,
            "confirm_nonce": new_nonce(),
            "created_at": now,
            "updated_at": now,
            "subscribed_at": now,
            "confirmation_sent_at": None,
            "confirmed_at": None,
            "unsubscribed_at": None,
        }
        if status == SubscriptionStatus.UNSUBSCRIBED:
            value.update(
                subscribed_at=row.subscribed_at or now,
                confirmed_at=row.confirmed_at,
                unsubscribed_at=row.unsubscribed_at or now,
            )
        elif status == SubscriptionStatus.CONFIRMED:
            value.update(
                subscribed_at=row.subscribed_at or now, confirmed_at=row.confirmed_at or now
            )
        elif emails is None:
            raise RuntimeError("a double opt-in import needs the email builder")
        else:
            value.update(confirmation_sent_at=now)
        values.append(value)
    if not values:
        return {}, set()
    created = {
        subscriber_id: (sub_id, nonce)
        for sub_id, subscriber_id, nonce in await session.execute(
            insert_or_ignore(session, Subscription)
            .values(values)
            .returning(Subscription.id, Subscription.subscriber_id, Subscription.confirm_nonce)
        )
    }
    who = f"admin {admin}, from {source}"
    pending = sum(
        1
        for row, status in zip(rows, statuses, strict=True)
        if status == SubscriptionStatus.PENDING and row.subscriber_id in created
    )
    times = iter(await run(session, limits.reserve(limits.CONFIRMATIONS, pending, cap, now)))
    added: dict[int, SubscriptionStatus] = {}
    waiting: set[int] = set()
    for row, status in zip(rows, statuses, strict=True):
        found = created.get(row.subscriber_id)
        if found is None:
            continue
        sub_id, nonce = found
        added[row.subscriber_id] = status
        if status == SubscriptionStatus.UNSUBSCRIBED:
            action, wording = ConsentAction.UNSUBSCRIBE, f"Imported as unsubscribed by {who}."
        elif status == SubscriptionStatus.CONFIRMED:
            action = ConsentAction.CONFIRM
            wording = f"Imported as confirmed by {who}. Reason given: {reason.strip()}"
        else:
            action = ConsentAction.SUBSCRIBE
            wording = f"Imported by {who}; a confirmation email was queued."
            assert emails is not None
            # Written as of when the cap lets it go: dated then, its link valid from then.
            message = emails.confirmation(
                Subscription(id=sub_id, confirm_nonce=nonce), row.email, next(times), imported=True
            )
            if message.next_attempt_at > now:
                waiting.add(row.subscriber_id)
            session.add(message)
        if status != SubscriptionStatus.PENDING:
            _earlier_consent(session, sub_id, row, source, now)
        session.add(_consent(sub_id, action, now, wording, "import", page_url=row.page_url))
    for status, event in (
        (SubscriptionStatus.CONFIRMED, events.CONFIRMED),
        (SubscriptionStatus.PENDING, events.PENDING),
    ):
        ids = [created[i][0] for i, st in added.items() if st == status]
        await events.subscriptions_changed(session, event, ids, now, method="import")
    return added, waiting


# The method of a consent record carried over from an imported file: the person's own
# signup or confirmation as the file records it, at the time it gives (exports prefer these
# to the import's own records, see ``service.transfer.exports``).
CARRIED = "imported-record"


def _earlier_consent(
    session: AsyncSession, sub_id: int, row: Imported, source: str, now: datetime
) -> None:
    """The opt-in and confirmation the file records evidence of (an IP address, a user
    agent, the wording shown: Mailchimp's OPTIN_IP and CONFIRM_IP, our own export's
    evidence columns), at the times it gives; without evidence, the times alone are kept
    on the subscription."""
    said = f"as {source} records it (the previous mailing tool's export)"
    if row.optin_ip or row.optin_user_agent or row.optin_wording:
        session.add(
            _consent(
                sub_id,
                ConsentAction.SUBSCRIBE,
                row.subscribed_at or now,
                row.optin_wording or f"Opted in, {said}.",
                CARRIED,
                RequestOrigin(ip=row.optin_ip, user_agent=row.optin_user_agent),
                row.page_url,
            )
        )
    if row.confirm_ip or row.confirm_user_agent or row.confirm_wording:
        session.add(
            _consent(
                sub_id,
                ConsentAction.CONFIRM,
                row.confirmed_at or now,
                row.confirm_wording or f"Confirmed, {said}.",
                CARRIED,
                RequestOrigin(ip=row.confirm_ip, user_agent=row.confirm_user_agent),
            )
        )


async def unsubscribe_by_import(
    session: AsyncSession,
    mailing_list: MailingList,
    opted_out: dict[int, str],
    *,
    admin: str,
    source: str,
    now: datetime,
) -> set[int]:
    """Unsubscribe the subscribers ``{subscriber id: status in the file}`` whose file says
    they opted out elsewhere (unsubscribed, cleaned, blocklisted); the subscriber ids that
    changed. An opt-out wins: whoever is confirmed or pending here is unsubscribed, with a
    consent record naming the file and its status, and their queued mail is cancelled.
    A few statements for the whole batch, whatever its size.
    """
    if not opted_out:
        return set()
    found = (
        await session.execute(
            select(Subscription.id, Subscription.subscriber_id)
            .where(
                Subscription.list_id == mailing_list.id,
                Subscription.subscriber_id.in_(list(opted_out)),
                Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
            )
            .with_for_update()
        )
    ).all()
    if not found:
        return set()
    await _unsubscribe_many(
        session,
        {
            sub_id: f"Unsubscribed by an import by admin {admin}, from {source}: "
            f"the file marks this address {opted_out[subscriber_id]!r}."
            for sub_id, subscriber_id in found
        },
        "import",
        now,
    )
    return {subscriber_id for _, subscriber_id in found}


# Transitions -----------------------------------------------------------------------------


async def _unsubscribe_many(
    session: AsyncSession, wordings: dict[int, str], method: str, now: datetime
) -> None:
    """Unsubscribe the subscriptions ``{id: consent wording}`` (locked by the caller, none
    unsubscribed yet) and cancel their queued mail: a few statements, whatever the count."""
    if not wordings:
        return
    sub_ids = list(wordings)
    await session.execute(  # by primary key, one executemany: a nonce of its own each
        update(Subscription),
        [
            {
                "id": sub_id,
                "status": SubscriptionStatus.UNSUBSCRIBED,
                "unsubscribed_at": now,
                "updated_at": now,
                "confirm_nonce": new_nonce(),
            }
            for sub_id in sub_ids
        ],
    )
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.subscription_id.in_(sub_ids))
        .where(OutboxMessage.status == OutboxStatus.QUEUED)
        .values(status=OutboxStatus.CANCELLED, last_error="unsubscribed before sending")
    )
    await session.execute(
        insert(ConsentRecord),
        [
            {
                "subscription_id": sub_id,
                "action": ConsentAction.UNSUBSCRIBE,
                "created_at": now,
                "wording": wording,
                "method": method,
            }
            for sub_id, wording in wordings.items()
        ],
    )
    await events.subscriptions_changed(session, events.UNSUBSCRIBED, sub_ids, now, method=method)


def _to_confirmed(sub: Subscription, now: datetime) -> None:
    sub.status = SubscriptionStatus.CONFIRMED
    sub.confirmed_at = now
    sub.updated_at = now
    sub.confirm_nonce = new_nonce()


async def _to_unsubscribed(
    session: AsyncSession,
    sub: Subscription,
    now: datetime,
    wording: str,
    method: str,
    origin: RequestOrigin | None = None,
) -> bool:
    """Unsubscribe ``sub`` and cancel its queued mail; nothing if it already is (False)."""
    if sub.status == SubscriptionStatus.UNSUBSCRIBED:
        return False
    sub.status = SubscriptionStatus.UNSUBSCRIBED
    sub.unsubscribed_at = now
    sub.updated_at = now
    sub.confirm_nonce = new_nonce()
    session.add(_consent(sub.id, ConsentAction.UNSUBSCRIBE, now, wording, method, origin))
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.subscription_id == sub.id)
        .where(OutboxMessage.status == OutboxStatus.QUEUED)
        .values(status=OutboxStatus.CANCELLED, last_error="unsubscribed before sending")
    )
    how = {"page": "link"}.get(method, method)
    await events.subscriptions_changed(session, events.UNSUBSCRIBED, [sub.id], now, method=how)
    return True


def _consent(
    subscription_id: int,
    action: ConsentAction,
    when: datetime,
    wording: str,
    method: str,
    origin: RequestOrigin | None = None,
    page_url: str | None = None,
) -> ConsentRecord:
    return ConsentRecord(
        subscription_id=subscription_id,
        action=action,
        created_at=when,
        ip_address=origin.ip if origin else None,
        user_agent=((origin.user_agent if origin else None) or "")[:512] or None,
        page_url=page_url,
        wording=wording,
        method=method,
    )


def _consent_values(
    subscription_id: int,
    action: ConsentAction,
    when: datetime,
    wording: str,
    method: str,
    origin: RequestOrigin | None = None,
    page_url: str | None = None,
) -> dict[str, object]:
    """`_consent` as column values, for a batch's one INSERT."""
    return {
        "subscription_id": subscription_id,
        "action": action,
        "created_at": when,
        "ip_address": origin.ip if origin else None,
        "user_agent": ((origin.user_agent if origin else None) or "")[:512] or None,
        "page_url": page_url,
        "wording": wording,
        "method": method,
    }


# The statements of `Subscriptions.subscribe_many`: those that take a batch's rows as
# parameters are built once per dialect (building one costs more than running it).


@functools.cache
def _add_subscribers(dialect: str) -> Executable:
    return insert_or_ignore(dialect, Subscriber)


@functools.cache
def _add_subscriptions(dialect: str) -> Executable:
    return insert_or_ignore(dialect, Subscription)


_SUBSCRIBER_IDS = select(Subscriber.id, Subscriber.email).where(
    Subscriber.email.in_(bindparam("emails", expanding=True))
)
# Locked (PostgreSQL) in one order, so that two batches never wait for each other.
_SUBSCRIPTIONS_OF = (
    select(Subscription.__table__)
    .where(Subscription.subscriber_id.in_(bindparam("ids", expanding=True)))
    .order_by(Subscription.id)
    .with_for_update()
)
_CHANGED = (  # what a signup may change on a subscription
    "box_source",
    "status",
    "confirm_nonce",
    "updated_at",
    "subscribed_at",
    "confirmation_sent_at",
    "confirmed_at",
)
_update_subscriptions = (
    update(Subscription)
    .where(Subscription.id == bindparam("b_id"))
    .values({column: bindparam(f"b_{column}") for column in _CHANGED})
)
