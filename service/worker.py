"""The worker: act on the signups taken in, drain the outbox, keep house; then wait.

Its loop runs those three steps in turn, and when none had anything to do, waits for the
wake-up signal (`service.wakeup`: a signup was taken in, or mail queued, in this process)
or the next poll (``NEWSLETTER_WORKER_POLL_INTERVAL``).

Draining the outbox: claim due rows, send each, retry temporary failures with backoff.
A claim is one ``UPDATE ... RETURNING`` that moves due rows to ``sending`` with a lease
(``NEWSLETTER_WORKER_LEASE``); on PostgreSQL its subquery also takes ``FOR UPDATE SKIP
LOCKED``, so any number of workers (the one in the server and ``newsletter worker``
processes) can drain one outbox. A worker sends up to ``NEWSLETTER_WORKER_CONCURRENCY``
messages of its batch at once. A worker that dies leaves rows whose lease runs out, and
another worker takes them.

What is guaranteed: a message is never lost, and it is sent once unless a worker dies
(or loses its database) in the instant between the SMTP server accepting the message
and the worker recording that. Nothing can close that window entirely, since the SMTP
server and the database cannot commit together; what the worker does is keep it to one
round trip:

- On PostgreSQL the row is marked ``sent`` in a transaction opened *before* the message
  goes out, and committed as soon as the server's 250 arrives; if sending fails the
  transaction rolls back. A dead worker's transaction is rolled back by the server, so
  the row comes back after its lease. The same UPDATE checks that the row still carries
  this worker's lease and keeps it locked while sending, so a row whose lease ran out is
  never sent by two workers at once.
- On SQLite (one writer at a time, so no transaction may stay open across a send) the
  row is marked right after the 250, and a worker renews its lease (compare-and-set)
  before each send once half of it has passed, skipping rows it has lost.

(`_MarkWhileSending` and `_SendThenMark` below; `Database.per_backend` picks the one.)

Such a resend carries the same Message-ID, which receiving systems use to drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import Select, and_, or_, select, update

from service.db import Database
from service.emails import Emails
from service.intake import Intake
from service.mail.senders import DeliveryError, Mailer
from service.models import MailingList, OutboxMessage, OutboxStatus, Subscription, utcnow
from service.retention import Housekeeping
from service.settings import Settings
from service.wakeup import Wakeup
from service.webhooks.delivery import WebhookSender

__all__ = ["OutboxWorker"]

log = logging.getLogger(__name__)

BATCH = 20


class _NotSent(Exception):
    """Rolls back the PostgreSQL "sent" mark of a message the server did not accept."""


class OutboxWorker:
    """The worker's loop: act on the signups taken in, drain the outbox, keep house; then
    wait for the wake-up signal or the next poll, unless there was work."""

    def __init__(
        self,
        db: Database,
        mailer: Mailer,
        emails: Emails,
        settings: Settings,
        *,
        intake: Intake | None = None,
        housekeeping: Housekeeping | None = None,
        wakeup: Wakeup | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self._db = db
        self._mailer = mailer
        self._emails = emails
        self._settings = settings
        self._intake = intake
        self._housekeeping = housekeeping
        self._wakeup = wakeup or Wakeup()
        self._webhooks = webhooks
        sqlite: _Delivery = _SendThenMark(db, settings.worker_lease, self._send, self._mark_sent)
        postgresql: _Delivery = _MarkWhileSending(db, self._send, self._mark_sent)
        self._delivery = db.per_backend(sqlite=sqlite, postgresql=postgresql)
        self._stopping = False

    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        log.info("outbox worker started")
        while not self._stopping:
            try:
                done = await self.act_on_signups()
                done += await self.drain_once()
                done += await self.deliver_webhooks()
                await self.keep_house()
            except Exception:
                log.exception("outbox worker: unexpected error; retrying shortly")
                done = 0
            if done or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.worker_poll_interval):
                    await self._wakeup.wait()
        if self._webhooks is not None:
            await self._webhooks.close()
        log.info("outbox worker stopped")

    async def act_on_signups(self) -> int:
        """Act on a batch of the signups the web service took in; how many."""
        return await self._intake.process() if self._intake is not None else 0

    async def deliver_webhooks(self) -> int:
        """Start sending a batch of due webhook deliveries (`service.webhooks.delivery`);
        how many."""
        return await self._webhooks.step() if self._webhooks is not None else 0

    async def keep_house(self) -> None:
        """Purge what is kept no longer (now and then; see `Housekeeping`)."""
        if self._housekeeping is not None:
            await self._housekeeping()

    def stop(self) -> None:
        """Finish the message in hand, then return from ``run``."""
        self._stopping = True
        self._wakeup.set()

    async def drain_once(self) -> int:
        """Claim one batch of due messages and try each once; the number handled."""
        rows = await self._claim(utcnow())
        if not rows:
            return 0
        claimed_at = time.monotonic()
        lists = await self._lists_for(rows)
        waiting = deque(rows)

        async def lane() -> None:
            while waiting and not self._stopping:
                row = waiting.popleft()
                await self._deliver(row, lists.get(row.id), claimed_at)

        lanes = min(self._settings.worker_concurrency, len(rows))
        results = await asyncio.gather(*(lane() for _ in range(lanes)), return_exceptions=True)
        for row in waiting:  # stopping: hand back what was not started
            await self._release(row)
        for result in results:
            if isinstance(result, BaseException):
                raise result
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
        )
        claim = (
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(self._delivery.claimable(due).scalar_subquery()))
            .values(
                status=OutboxStatus.SENDING,
                lease_until=now + timedelta(seconds=self._settings.worker_lease),
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

    async def _deliver(
        self, row: OutboxMessage, mailing_list: MailingList | None, claimed_at: float
    ) -> None:
        if mailing_list is None:
            await self._finish(row, OutboxStatus.FAILED, "recipient no longer exists")
            return
        try:
            message = self._emails.build(row, mailing_list)
        except Exception as exc:
            log.exception("outbox %s: could not build the message", row.id)
            await self._finish(row, OutboxStatus.FAILED, f"could not build message: {exc}")
            return
        error = await self._delivery(row, message, claimed_at)
        if error is not None:
            await self._failed_attempt(row, error)

    async def _send(self, row: OutboxMessage, message: EmailMessage) -> DeliveryError | None:
        try:
            await self._mailer.send(message)
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # a sender bug must not kill the worker or lose the row
            log.exception("outbox %s: unexpected error while sending", row.id)
            return DeliveryError(repr(exc), permanent=False)
        return None

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


_Send = Callable[[OutboxMessage, EmailMessage], Awaitable[DeliveryError | None]]
_Record = Callable[[OutboxMessage], Awaitable[None]]


class _Delivery(Protocol):
    """How rows are claimed and a message is sent and recorded: what differs by backend."""

    def claimable(self, due: Select[int]) -> Select[int]:
        """Of the due rows, those this worker may claim."""
        ...

    async def __call__(
        self, row: OutboxMessage, message: EmailMessage, claimed_at: float
    ) -> DeliveryError | None:
        """Send ``message``, recording it as sent if it was; the error if it was not."""
        ...


class _MarkWhileSending:
    """PostgreSQL: mark sent, send, commit on the 250; roll back if it was not accepted."""

    def __init__(self, db: Database, send: _Send, mark_sent: _Record) -> None:
        self._db = db
        self._send = send
        self._mark_sent = mark_sent

    def claimable(self, due: Select[int]) -> Select[int]:
        # Rows another worker's claim is taking are skipped, not waited for.
        return due.with_for_update(skip_locked=True)

    async def __call__(
        self, row: OutboxMessage, message: EmailMessage, claimed_at: float
    ) -> DeliveryError | None:
        error: DeliveryError | None = None
        accepted = False
        try:
            async with self._db.sessions() as session, session.begin():
                ours = await session.scalar(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row.id)
                    .where(OutboxMessage.status == OutboxStatus.SENDING)
                    .where(OutboxMessage.lease_until == row.lease_until)
                    .values(status=OutboxStatus.SENT, sent_at=utcnow(), lease_until=None)
                    .returning(OutboxMessage.id)
                )
                if ours is None:
                    log.warning("outbox %s: lease ran out and another worker has it", row.id)
                    return None
                error = await self._send(row, message)
                if error is not None:
                    raise _NotSent
                accepted = True
        except _NotSent:
            return error
        except Exception:
            if not accepted:
                raise  # nothing went out; the row comes back when its lease runs out
            log.exception("outbox %s: sent, but could not record it; retrying", row.id)
            await self._mark_sent(row)
            return None
        log.info("outbox %s: sent %s (attempt %s)", row.id, row.template, row.attempts)
        return None


class _SendThenMark:
    """SQLite: one writer at a time, so no transaction stays open across a send. Renew the
    lease once half of it has passed (unless another worker has taken the row), send, and
    mark the row sent right after the 250."""

    def __init__(self, db: Database, lease: float, send: _Send, mark_sent: _Record) -> None:
        self._db = db
        self._lease = lease
        self._send = send
        self._mark_sent = mark_sent

    def claimable(self, due: Select[int]) -> Select[int]:
        # The claim's write transaction holds SQLite's one write lock: claims never overlap.
        return due

    async def __call__(
        self, row: OutboxMessage, message: EmailMessage, claimed_at: float
    ) -> DeliveryError | None:
        if not await self._still_ours(row, claimed_at):
            return None
        error = await self._send(row, message)
        if error is None:
            await self._mark_sent(row)
        return error

    async def _still_ours(self, row: OutboxMessage, claimed_at: float) -> bool:
        if time.monotonic() - claimed_at < self._lease / 2:
            return True
        renewed = utcnow() + timedelta(seconds=self._lease)
        async with self._db.write() as session:
            ours = await session.scalar(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .where(OutboxMessage.status == OutboxStatus.SENDING)
                .where(OutboxMessage.lease_until == row.lease_until)
                .values(lease_until=renewed)
                .returning(OutboxMessage.id)
            )
        if ours is None:
            log.warning("outbox %s: lease ran out and another worker has it", row.id)
            return False
        row.lease_until = renewed
        return True
