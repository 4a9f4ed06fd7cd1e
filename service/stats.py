"""Counts for the dashboard and the admin API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select, type_coerce
from sqlalchemy.types import String

from service.db import Database
from service.models import (
    MailingList,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    Subscription,
    utcnow,
)
from service.people import shown_status

__all__ = ["Daily", "ListCounts", "PeopleCounts", "daily_activity", "list_counts", "people_counts"]


@dataclass
class ListCounts:
    slug: str
    name: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def list_counts(db: Database) -> list[ListCounts]:
    async with db.read() as session:
        lists = {
            ml.id: ListCounts(ml.slug, ml.name, {"pending": 0, "confirmed": 0, "unsubscribed": 0})
            for ml in (await session.scalars(select(MailingList).order_by(MailingList.slug))).all()
        }
        rows = await session.execute(
            select(Subscription.list_id, Subscription.status, func.count()).group_by(
                Subscription.list_id, Subscription.status
            )
        )
        for list_id, status, count in rows:
            lists[list_id].counts[str(status)] = count
    return list(lists.values())


@dataclass
class PeopleCounts:
    """People (distinct subscribers), not subscriptions: someone on three lists is one.

    ``by_status`` counts the people with at least one subscription in that status, so a
    person confirmed on one list and unsubscribed from another is in both; ``failed``
    counts the people with a subscription that reads ``failed`` (its latest email could
    not be delivered).
    """

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    failed: int = 0


async def people_counts(db: Database) -> PeopleCounts:
    counts = PeopleCounts(by_status={"pending": 0, "confirmed": 0, "unsubscribed": 0})
    async with db.read() as session:
        counts.total = int(await session.scalar(select(func.count(Subscriber.id))) or 0)
        rows = await session.execute(
            select(
                Subscription.status, func.count(func.distinct(Subscription.subscriber_id))
            ).group_by(Subscription.status)
        )
        for status, count in rows:
            counts.by_status[str(status)] = count
        # Only subscriptions with a failed email can read failed: look at those alone.
        ever_failed = select(OutboxMessage.subscription_id).where(
            OutboxMessage.status == OutboxStatus.FAILED
        )
        counts.failed = int(
            await session.scalar(
                select(func.count(func.distinct(Subscription.subscriber_id))).where(
                    Subscription.id.in_(ever_failed),
                    type_coerce(shown_status(), String) == "failed",
                )
            )
            or 0
        )
    return counts


@dataclass
class Daily:
    day: date
    signups: int
    confirmations: int
    unsubscribes: int = 0


async def daily_activity(db: Database, days: int = 30) -> list[Daily]:
    """Signups, confirmations and unsubscribes per UTC day, oldest first, days without any
    included."""
    today = utcnow().date()
    start = today - timedelta(days=days - 1)
    since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    per_day = {
        start + timedelta(days=i): Daily(start + timedelta(days=i), 0, 0) for i in range(days)
    }
    async with db.read() as session:
        for column, attr in (
            (Subscription.subscribed_at, "signups"),
            (Subscription.confirmed_at, "confirmations"),
            (Subscription.unsubscribed_at, "unsubscribes"),
        ):
            day = func.date(column)
            rows = await session.execute(
                select(day, func.count()).where(column >= since).group_by(day)
            )
            for value, count in rows:
                key = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
                if key in per_day:
                    setattr(per_day[key], attr, count)
    return list(per_day.values())
