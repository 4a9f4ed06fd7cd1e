"""Counts for the dashboard and the admin API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select

from service.db import Database
from service.models import MailingList, Subscription, utcnow

__all__ = ["Daily", "ListCounts", "daily_activity", "list_counts"]


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
class Daily:
    day: date
    signups: int
    confirmations: int


async def daily_activity(db: Database, days: int = 30) -> list[Daily]:
    """Signups and confirmations per UTC day, oldest first, days without any included."""
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
