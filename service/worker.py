"""Drain the outbox: claim due rows, send each, retry temporary failures with backoff.

A claim is one ``UPDATE ... RETURNING`` that moves due rows to ``sending`` with a lease;
on PostgreSQL its subquery also takes ``FOR UPDATE SKIP LOCKED``, so any number of
workers can drain one outbox. A worker that dies leaves rows whose lease runs out, and
another worker takes them. Once the SMTP server accepted a message, the row is marked
sent before anything else happens, and is never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update

from service.db import Database
from service.emails import Emails
from service.mail.senders import DeliveryError, Mailer
from service.models import MailingList, OutboxMessage, OutboxStatus, Subscription, utcnow
from service.settings import Settings

__all__ = ["OutboxWorker"]

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
BATCH = 20


class OutboxWorker:
    def __init__(self, db: Database, mailer: Mailer, emails: Emails, settings: Settings) -> None:
        self._db = db
        self._mailer = mailer
        self._emails = emails
        self._settings = settings
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        log.info("outbox worker started")
        while not self._stopping:
            try:
                sent = await self.drain_once()
            except Exception:
                log.exception("outbox worker: unexpected error; retrying shortly")
                sent = 0
            if sent or self._stopping:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.worker_poll_interval)
        log.info("outbox worker stopped")

    def stop(self) -> None:
        """Finish the message in hand, then return from ``run``."""
        self._stopping = True
        self._wake.set()

    async def drain_once(self) -> int:
        """Claim one batch of due messages and try each once; the number handled."""
        rows = await self._claim(utcnow())
        if not rows:
            return 0
        lists = await self._lists_for(rows)
        for row in rows:
            if self._stopping:
                await self._release(row)
                continue
            await self._deliver(row, lists.get(row.id))
        return len(rows)

    async def _claim(self, now: datetime) -> list[OutboxMessage]:
        due = (
            select(OutboxMessage.id)
            .where(
                or_(
                    and_(
                        OutboxMessage.status == OutboxStatus.QUEUED,
                        OutboxMessage.next_attempt_at <= now,
                    ),
                    and_(
                        OutboxMessage.status == OutboxStatus.SENDING,
                        OutboxMessage.lease_until < now,
                    ),
                )
            )
            .order_by(OutboxMessage.next_attempt_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(due.scalar_subquery()))
            .values(
                status=OutboxStatus.SENDING,
                lease_until=now + LEASE,
                attempts=OutboxMessage.attempts + 1,
            )
            .returning(OutboxMessage)
            .execution_options(synchronize_session=False)
        )
        async with self._db.write() as session:
            rows = list((await session.scalars(claim)).all())
        rows.sort(key=lambda r: r.next_attempt_at)
        return rows

    async def _lists_for(self, rows: list[OutboxMessage]) -> dict[int, MailingList]:
        ids = {r.subscription_id for r in rows if r.subscription_id is not None}
        async with self._db.read() as session:
            result = await session.execute(
                select(Subscription.id, MailingList)
                .join(MailingList, MailingList.id == Subscription.list_id)
                .where(Subscription.id.in_(ids))
            )
            by_sub = {sub_id: ml for sub_id, ml in result}
        return {r.id: by_sub[r.subscription_id] for r in rows if r.subscription_id in by_sub}

    async def _deliver(self, row: OutboxMessage, mailing_list: MailingList | None) -> None:
        if mailing_list is None:
            await self._finish(row, OutboxStatus.FAILED, "recipient no longer exists")
            return
        try:
            message = self._emails.build(row, mailing_list)
        except Exception as exc:
            log.exception("outbox %s: could not build the message", row.id)
            await self._finish(row, OutboxStatus.FAILED, f"could not build message: {exc}")
            return
        try:
            await self._mailer.send(message)
        except DeliveryError as exc:
            await self._failed_attempt(row, exc)
            return
        except Exception as exc:  # a sender bug must not kill the worker or lose the row
            log.exception("outbox %s: unexpected error while sending", row.id)
            await self._failed_attempt(row, DeliveryError(repr(exc), permanent=False))
            return
        await self._mark_sent(row)

    async def _failed_attempt(self, row: OutboxMessage, error: DeliveryError) -> None:
        now = utcnow()
        if error.permanent:
            log.warning("outbox %s: permanent failure: %s", row.id, error.reason)
            await self._finish(row, OutboxStatus.FAILED, error.reason)
            return
        ceiling = min(
            self._settings.retry_max_delay,
            self._settings.retry_base * 2 ** max(row.attempts - 1, 0),
        )
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
        next_at = now + timedelta(seconds=delay)
        if next_at - row.created_at > timedelta(seconds=self._settings.retry_deadline):
            log.warning(
                "outbox %s: giving up after %s attempts: %s", row.id, row.attempts, error.reason
            )
            await self._finish(row, OutboxStatus.FAILED, f"gave up: {error.reason}")
            return
        log.info(
            "outbox %s: attempt %s failed (%s); retrying in %.1fs",
            row.id,
            row.attempts,
            error.reason,
            delay,
        )
        async with self._db.write() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(
                    status=OutboxStatus.QUEUED,
                    next_attempt_at=next_at,
                    lease_until=None,
                    last_error=error.reason,
                )
            )

    async def _mark_sent(self, row: OutboxMessage) -> None:
        # The server has the message: this write must land, or a later claim would resend.
        delay = 0.05
        while True:
            try:
                await self._finish(row, OutboxStatus.SENT, None)
                return
            except Exception:
                log.exception("outbox %s: sent, but could not record it; retrying", row.id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _finish(self, row: OutboxMessage, status: OutboxStatus, error: str | None) -> None:
        now = utcnow()
        values: dict[str, object] = {"status": status, "lease_until": None}
        if status == OutboxStatus.SENT:
            values["sent_at"] = now
        else:
            values["last_error"] = error
        async with self._db.write() as session:
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id == row.id).values(**values)
            )
        if status == OutboxStatus.SENT:
            log.info("outbox %s: sent %s (attempt %s)", row.id, row.template, row.attempts)

    async def _release(self, row: OutboxMessage) -> None:
        """Give a claimed row back untried (shutting down), without spending an attempt."""
        async with self._db.write() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(
                    status=OutboxStatus.QUEUED,
                    lease_until=None,
                    attempts=OutboxMessage.attempts - 1,
                )
            )
