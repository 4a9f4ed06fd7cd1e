"""Keep nothing longer than needed: unconfirmed signups, spent counters and challenges.

An address that was signed up and never confirmed is someone's personal data that nobody
agreed to give; after ``NEWSLETTER_UNCONFIRMED_RETENTION`` it goes, with its consent
records and queued mail, and the subscriber row too when no other subscription keeps it.
A pending subscription that was confirmed once before (a reader who left and signed up
again) keeps its history of consent and is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Row, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Database
from service.models import (
    ConsentRecord,
    OutboxMessage,
    RateCounter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    UsedChallenge,
    utcnow,
)
from service.settings import Settings

__all__ = ["Housekeeping", "Purged", "purge"]

log = logging.getLogger(__name__)

EVERY = 600.0  # seconds between two runs in one worker
CHUNK = 500  # subscriptions deleted per transaction


@dataclass(frozen=True)
class Purged:
    subscriptions: int
    subscribers: int
    counters: int
    challenges: int


async def purge(db: Database, settings: Settings, now: datetime | None = None) -> Purged:
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.unconfirmed_retention)
    stale = (
        select(Subscription.id, Subscription.subscriber_id)
        .where(Subscription.status == SubscriptionStatus.PENDING)
        .where(Subscription.confirmed_at.is_(None))
        .where(Subscription.subscribed_at < cutoff)
        .limit(CHUNK)
    )
    subscriptions = subscribers = 0
    while True:
        async with db.write() as session:
            found = (await session.execute(stale)).all()
            removed = await _remove(session, found)
        subscriptions += len(found)
        subscribers += removed
        if len(found) < CHUNK:
            break
    async with db.write() as session:
        counters = (
            await session.execute(
                delete(RateCounter).where(RateCounter.expires_at < now).returning(RateCounter.key)
            )
        ).all()
        challenges = (
            await session.execute(
                delete(UsedChallenge)
                .where(UsedChallenge.expires_at < now)
                .returning(UsedChallenge.digest)
            )
        ).all()
    result = Purged(subscriptions, subscribers, len(counters), len(challenges))
    if subscriptions or subscribers:
        log.info(
            "retention: deleted %s unconfirmed signups and %s subscribers with no list left",
            result.subscriptions,
            result.subscribers,
        )
    return result


async def _remove(session: AsyncSession, found: Sequence[Row[int, int]]) -> int:
    """Delete these subscriptions and what hangs on them; how many subscribers went too."""
    ids = [row[0] for row in found]
    people = {row[1] for row in found}
    if not ids:
        return 0
    await session.execute(delete(ConsentRecord).where(ConsentRecord.subscription_id.in_(ids)))
    await session.execute(delete(OutboxMessage).where(OutboxMessage.subscription_id.in_(ids)))
    await session.execute(delete(Subscription).where(Subscription.id.in_(ids)))
    orphans = await session.execute(
        delete(Subscriber)
        .where(Subscriber.id.in_(people))
        .where(~exists().where(Subscription.subscriber_id == Subscriber.id))
        .returning(Subscriber.id)
    )
    return len(orphans.all())


class Housekeeping:
    """The worker's housekeeping: purge now and then (every worker may; the deletes don't
    conflict)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._next = 0.0

    async def __call__(self) -> None:
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + EVERY
            await purge(self._db, self._settings)
