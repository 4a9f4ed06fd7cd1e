"""People as editors see them: search, and one person's record (everything stored about them).

Search pages with a keyset (``id < after``), not OFFSET, so page 1000 costs what page 1
costs. Reading only: unsubscribing someone and erasing them are state changes, made by
``service.subscriptions`` (``unsubscribe_by_admin``, ``erase``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
)

from service.db import Database
from service.models import ConsentRecord, MailingList, OutboxMessage, Subscriber, Subscription

__all__ = [
    "SHOWN_STATUSES",
    "Page",
    "PersonRecord",
    "SearchFilters",
    "matching_ids",
    "person_record",
    "personal_data",
    "search",
    "shown_status",
]

PAGE_SIZE = 50
SHOWN_STATUSES = ("pending", "confirmed", "unsubscribed", "failed")


def shown_status() -> ColumnElement[str]:
    """A subscription's status as editors and exports show it: ``failed`` when the latest
    email to it could not be delivered (an opt-out still reads as ``unsubscribed``)."""
    latest_mail = (
        select(OutboxMessage.status)
        .where(OutboxMessage.subscription_id == Subscription.id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    raw_status = type_coerce(Subscription.status, String)
    return case(
        (raw_status == "unsubscribed", literal("unsubscribed")),
        (type_coerce(latest_mail, String) == "failed", literal("failed")),
        else_=raw_status,
    )


@dataclass(frozen=True)
class SearchFilters:
    query: str = ""
    list_slug: str = ""
    status: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class Row:
    id: int
    email: str
    name: str | None
    created_at: datetime
    lists: list[tuple[str, str]] = field(default_factory=list)  # (slug, status)
    # The earliest subscription date among the subscriptions the filters match (all of
    # them without list, status or date filters): the date the date filter reads.
    subscribed_at: datetime | None = None


@dataclass
class Page:
    rows: list[Row]
    next_after: int | None
    total: int = 0  # people matching the filters, on every page
    first: int = 0  # the position of the page's first row among them (1-based; 0: none)

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def _escape_like(text: str) -> str:
    """``text`` as a LIKE pattern that matches itself only (``\\`` is the escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _subscription_conditions(filters: SearchFilters) -> list[ColumnElement[bool]]:
    """What a subscription must be for the list, status and date filters."""
    conditions: list[ColumnElement[bool]] = []
    if filters.list_slug:
        conditions.append(
            Subscription.list_id
            == select(MailingList.id).where(MailingList.slug == filters.list_slug).scalar_subquery()
        )
    if filters.status:
        conditions.append(shown_status() == filters.status)
    if filters.since:
        conditions.append(Subscription.subscribed_at >= filters.since)
    if filters.until:
        conditions.append(Subscription.subscribed_at < filters.until)
    return conditions


def _filtered(filters: SearchFilters) -> Select[Subscriber]:
    query = select(Subscriber)
    if filters.query:
        text = filters.query.strip().lower()
        needle = f"%{_escape_like(text)}%"
        # Attributes are stored as JSON text, non-ASCII escaped (\\u00f6): look for the
        # text as JSON spells it, so "Köln" finds {"city": "Köln"}.
        spelled = f"%{_escape_like(json.dumps(text)[1:-1])}%"
        query = query.where(
            or_(
                Subscriber.email.like(needle, escape="\\"),
                Subscriber.name.ilike(needle, escape="\\"),
                cast(Subscriber.attributes, String).ilike(spelled, escape="\\"),
            )
        )
    conditions = [Subscription.subscriber_id == Subscriber.id]
    conditions += _subscription_conditions(filters)
    if len(conditions) > 1:
        query = query.where(exists(select(Subscription.id).where(and_(*conditions))))
    return query


async def matching_ids(db: Database, filters: SearchFilters) -> list[int]:
    """The ids of everyone the filters match (every page), newest first: a bulk action's
    people."""
    query = _filtered(filters).with_only_columns(Subscriber.id).order_by(Subscriber.id.desc())
    async with db.read() as session:
        return list((await session.scalars(query)).all())


async def search(
    db: Database, filters: SearchFilters, after: int | None = None, limit: int = PAGE_SIZE
) -> Page:
    query = _filtered(filters).order_by(Subscriber.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Subscriber.id < after)
    matching = _filtered(filters).with_only_columns(func.count(Subscriber.id))
    async with db.read() as session:
        found = list((await session.scalars(query)).all())
        more = len(found) > limit
        found = found[:limit]
        total = int(await session.scalar(matching) or 0)
        first = 0
        if found:
            before = (
                int(await session.scalar(matching.where(Subscriber.id > found[0].id)) or 0)
                if after is not None
                else 0
            )
            first = before + 1
        rows = {s.id: Row(s.id, s.email, s.name, s.created_at) for s in found}
        if rows:
            earliest = await session.execute(
                select(Subscription.subscriber_id, func.min(Subscription.subscribed_at))
                .where(Subscription.subscriber_id.in_(rows), *_subscription_conditions(filters))
                .group_by(Subscription.subscriber_id)
            )
            for subscriber_id, subscribed_at in earliest:
                rows[subscriber_id].subscribed_at = subscribed_at
            memberships = await session.execute(
                select(Subscription.subscriber_id, MailingList.slug, shown_status())
                .join(MailingList, MailingList.id == Subscription.list_id)
                .where(Subscription.subscriber_id.in_(rows))
                .order_by(MailingList.slug)
            )
            for subscriber_id, slug, status in memberships:
                rows[subscriber_id].lists.append((slug, str(status)))
    ordered = [rows[s.id] for s in found]
    return Page(ordered, ordered[-1].id if more and ordered else None, total, first)


@dataclass
class PersonRecord:
    subscriber: Subscriber
    subscriptions: list[tuple[Subscription, MailingList]]
    consent: list[tuple[ConsentRecord, str]]  # (record, list slug)
    mail: list[tuple[OutboxMessage, str]]
    shown_statuses: dict[int, str] = field(default_factory=dict)  # subscription id -> shown

    def shown(self, subscription: Subscription) -> str:
        """Its status as editors see it (``shown_status``)."""
        return self.shown_statuses.get(subscription.id, str(subscription.status))


async def person_record(db: Database, subscriber_id: int) -> PersonRecord | None:
    async with db.read() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return None
        subs: list[tuple[Subscription, MailingList]] = []
        shown: dict[int, str] = {}
        for s, ml, status in await session.execute(
            select(Subscription, MailingList, shown_status())
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(Subscription.subscriber_id == subscriber_id)
            .order_by(MailingList.slug)
        ):
            subs.append((s, ml))
            shown[s.id] = status
        ids = [s.id for s, _ in subs]
        slug_of = {s.id: ml.slug for s, ml in subs}
        consent = [
            (c, slug_of[c.subscription_id])
            for c in (
                await session.scalars(
                    select(ConsentRecord)
                    .where(ConsentRecord.subscription_id.in_(ids))
                    .order_by(ConsentRecord.created_at, ConsentRecord.id)
                )
            ).all()
        ]
        mail = [
            (m, slug_of.get(m.subscription_id or 0, ""))
            for m in (
                await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.subscription_id.in_(ids))
                    .order_by(OutboxMessage.id)
                )
            ).all()
        ]
    return PersonRecord(subscriber, subs, consent, mail, shown)


def personal_data(record: PersonRecord) -> dict[str, Any]:
    """Everything stored about one person, for a data-access request (GDPR art. 15)."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    s = record.subscriber
    return {
        "email": s.email,
        "name": s.name,
        "attributes": s.attributes,
        "created_at": when(s.created_at),
        "subscriptions": [
            {
                "list": ml.slug,
                "list_name": ml.name,
                "status": str(sub.status),
                "subscribed_at": when(sub.subscribed_at),
                "confirmed_at": when(sub.confirmed_at),
                "unsubscribed_at": when(sub.unsubscribed_at),
            }
            for sub, ml in record.subscriptions
        ],
        "consent_records": [
            {
                "list": slug,
                "action": str(c.action),
                "at": when(c.created_at),
                "ip_address": c.ip_address,
                "user_agent": c.user_agent,
                "page_url": c.page_url,
                "wording": c.wording,
                "method": c.method,
            }
            for c, slug in record.consent
        ],
        "emails": [
            {
                "list": slug,
                "kind": m.template,
                "status": str(m.status),
                "queued_at": when(m.created_at),
                "sent_at": when(m.sent_at),
            }
            for m, slug in record.mail
        ],
    }
