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

the row is marked ``sent`` right after the 250, together with the rows the other lanes
had accepted meanwhile (`service.sent_marks`: one write for several messages, and a lane
waits for its record before it sends again, so at most ``NEWSLETTER_WORKER_CONCURRENCY``
messages are ever accepted and not yet recorded). No transaction stays open across a
send (SQLite has one writer at a time; on PostgreSQL it would hold a connection per
message in flight). A worker renews its lease (compare-and-set) before each send once
half of it has passed, and skips rows it has lost, so a row is not sent by two workers
at once while the lease is kept well above the SMTP timeout (`_SendThenMark` below).

Such a resend carries the same Message-ID, which receiving systems use to drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy import Integer, Select, and_, bindparam, or_, select, update
from sqlalchemy.sql import Executable

from service.db import Database, Unavailable, Write, Writes
from service.emails import Emails
from service.intake import Intake
from service.mail.render import Outgoing
from service.mail.senders import DeliveryError, Mailer
from service.metrics import Metrics
from service.models import MailingList, OutboxMessage, OutboxStatus, Subscription, utcnow
from service.retention import Housekeeping
from service.sent_marks import SentMarks
from service.settings import Settings
from service.wakeup import Wakeup
from service.webhooks.delivery import WebhookSender

__all__ = ["OutboxWorker"]

log = logging.getLogger(__name__)

BATCH = 20  # messages claimed at a time (all sent well within half a lease)


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
        metrics: Metrics | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._mailer = mailer
        self._emails = emails
        self._settings = settings
        self._intake = intake
        self._housekeeping = housekeeping
        self._wakeup = wakeup or Wakeup()
        self._webhooks = webhooks
        self._marks = SentMarks(db)  # rows accepted together are recorded together
        self._delivery: _Delivery = _SendThenMark(
            db,
            settings.worker_lease,
            self._send,
            self._marks.sent,
            # PostgreSQL: rows another worker's claim is taking are skipped, not waited
            # for. SQLite: the claim's write transaction holds the one write lock, so
            # claims never overlap.
            skip_locked=db.per_backend(sqlite=False, postgresql=True),
        )
        self._stopping = False

    @functools.cached_property
    def _claim_statements(self) -> tuple[Executable, Executable]:
        """Move due rows to ``sending`` with a lease: first rows a dead worker left (lease
        run out), then queued ones that are due; apart, so that the first can be counted,
        as each may go out a second time. Built once: building costs more than running."""
        now = bindparam("now", type_=OutboxMessage.next_attempt_at.type)
        abandoned = and_(
            OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.lease_until < now
        )
        queued = and_(
            OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.next_attempt_at <= now
        )

        def claim(which: Any) -> Executable:
            due = (
                select(OutboxMessage.id)
                .where(which)
                .order_by(OutboxMessage.next_attempt_at)
                .limit(bindparam("count", type_=Integer))
            )
            return (
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(self._delivery.claimable(due).scalar_subquery()))
                .values(
                    status=OutboxStatus.SENDING,
                    lease_until=bindparam("new_lease", type_=OutboxMessage.lease_until.type),
                    attempts=OutboxMessage.attempts + 1,
                )
                .returning(*OutboxMessage.__table__.columns)
            )

        return claim(abandoned), claim(queued)

    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        log.info("outbox worker started")
        # Signups taken in by other processes wake it too (LISTEN/NOTIFY on PostgreSQL, a
        # signal file on SQLite): the poll interval is only a fallback.
        async with self._db.listen_for_work(self._wakeup.set):
            await self._loop()
        if self._webhooks is not None:
            await self._webhooks.close()
        log.info("outbox worker stopped")

    async def _loop(self) -> None:
        while not self._stopping:
            pause = self._settings.worker_poll_interval
            try:
                done = await self.act_on_signups()
                done += await self.drain_once()
                done += await self.deliver_webhooks()
                await self.keep_house()
            except Unavailable as exc:  # read-only, disk full, down: wait, or a wake-up
                log.warning("outbox worker: the database takes no writes (%s)", exc.reason)
                done, pause = 0, max(pause, exc.retry_after or 0.0)
            except Exception:
                log.exception("outbox worker: unexpected error; retrying shortly")
                done = 0
            if done or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wakeup.wait()

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
        rows, lists = await self._db.write_batch(partial(self._claim, utcnow()))
        if not rows:
            return 0
        claimed_at = time.monotonic()
        waiting = deque(rows)

        async def lane() -> None:
            while waiting and not self._stopping:
                row = waiting.popleft()
                await self._deliver(row, lists.get(row.id), claimed_at)

        lanes = min(self._settings.worker_concurrency, len(rows))
        renewing = asyncio.create_task(self._renew_leases(rows), name="outbox-lease-renewal")
        try:
            results = await asyncio.gather(*(lane() for _ in range(lanes)), return_exceptions=True)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        for row in waiting:  # stopping: hand back what was not started
            await self._release(row)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(rows)

    def _claim(self, now: datetime) -> Writes[tuple[list[OutboxMessage], dict[int, MailingList]]]:
        """Claim due rows, and read the lists they are for, in one write (one trip on
        SQLite: `Database.write_batch`)."""
        lease_until = now + timedelta(seconds=self._settings.worker_lease)
        rows: list[OutboxMessage] = []
        for n, statement in enumerate(self._claim_statements):
            params = {"now": now, "new_lease": lease_until, "count": BATCH - len(rows)}
            claimed = [OutboxMessage(**row._mapping) for row in (yield Write(statement, params))]
            if n == 0 and claimed:
                log.warning(
                    "outbox: took over %s message(s) whose worker's lease ran out; they "
                    "may go out twice (same Message-ID)",
                    len(claimed),
                )
                if self._metrics is not None:
                    self._metrics.outbox_takeovers.inc(len(claimed))
            rows += claimed
            if len(rows) >= BATCH:
                break
        rows.sort(key=lambda r: r.next_attempt_at)
        if not rows:
            return [], {}
        ids = sorted({r.subscription_id for r in rows if r.subscription_id is not None})
        by_sub = {
            row.subscription_id: MailingList(
                **{k: v for k, v in row._mapping.items() if k != "subscription_id"}
            )
            for row in (
                yield Write(
                    select(Subscription.id.label("subscription_id"), *MailingList.__table__.columns)
                    .join(MailingList, MailingList.id == Subscription.list_id)
                    .where(Subscription.id.in_(ids))
                )
            )
        }
        lists = {r.id: by_sub[r.subscription_id] for r in rows if r.subscription_id in by_sub}
        return rows, lists

    async def _renew_leases(self, rows: list[OutboxMessage]) -> None:
        """While a batch is in hand, renew its leases every third of the lease, so a lease
        can be short (a dead worker's mail is taken over soon) and still outlast any send.

        Compare-and-set per row: a row finished, or taken by another worker, is left alone.
        """
        lease = self._settings.worker_lease
        while True:
            await asyncio.sleep(lease / 3)
            renewed = utcnow() + timedelta(seconds=lease)
            mine = or_(
                *(
                    and_(OutboxMessage.id == r.id, OutboxMessage.lease_until == r.lease_until)
                    for r in rows
                )
            )
            ours = select(OutboxMessage.id).where(OutboxMessage.status == OutboxStatus.SENDING)
            by_id = {r.id: r for r in rows}
            try:
                async with self._db.write() as session:
                    kept = await session.scalars(
                        update(OutboxMessage)
                        .where(
                            OutboxMessage.id.in_(
                                self._delivery.claimable(ours.where(mine)).scalar_subquery()
                            )
                        )
                        .values(lease_until=renewed)
                        .returning(OutboxMessage.id)
                        .execution_options(synchronize_session=False)
                    )
                    # Before the commit: a send's own compare-and-set waits for it (the
                    # writer lock on SQLite, the row lock on PostgreSQL).
                    for row_id in kept.all():
                        by_id[row_id].lease_until = renewed
            except Exception:
                log.exception("outbox: could not renew leases; trying again")

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

    async def _send(self, row: OutboxMessage, message: Outgoing) -> DeliveryError | None:
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
        # Retried until the deadline: the last try is at the deadline, not a backoff before.
        deadline = row.created_at + timedelta(seconds=self._settings.retry_deadline)
        if now >= deadline:
            log.warning(
                "outbox %s: giving up after %s attempts: %s", row.id, row.attempts, error.reason
            )
            await self._finish(row, OutboxStatus.FAILED, f"gave up: {error.reason}")
            return
        next_at = min(now + timedelta(seconds=delay), deadline)
        delay = (next_at - now).total_seconds()
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


_LISTS_OF = (  # the lists of these subscriptions (built once)
    select(Subscription.id.label("subscription_id"), *MailingList.__table__.columns)
    .join(MailingList, MailingList.id == Subscription.list_id)
    .where(Subscription.id.in_(bindparam("ids", expanding=True)))
)

_Send = Callable[[OutboxMessage, Outgoing], Awaitable[DeliveryError | None]]
_Record = Callable[[OutboxMessage], Awaitable[None]]


class _Delivery(Protocol):
    """How rows are claimed and a message is sent and recorded: what differs by backend."""

    def claimable(self, due: Select[int]) -> Select[int]:
        """Of the due rows, those this worker may claim."""
        ...

    async def __call__(
        self, row: OutboxMessage, message: Outgoing, claimed_at: float
    ) -> DeliveryError | None:
        """Send ``message``, recording it as sent if it was; the error if it was not."""
        ...


class _SendThenMark:
    """No transaction stays open across a send. Renew the lease once half of it has passed
    (unless another worker has taken the row), send, and mark the row sent right after
    the 250."""

    def __init__(
        self,
        db: Database,
        lease: float,
        send: _Send,
        mark_sent: _Record,
        *,
        skip_locked: bool,
    ) -> None:
        self._db = db
        self._lease = lease
        self._send = send
        self._mark_sent = mark_sent
        self._skip_locked = skip_locked

    def claimable(self, due: Select[int]) -> Select[int]:
        return due.with_for_update(skip_locked=True) if self._skip_locked else due

    async def __call__(
        self, row: OutboxMessage, message: Outgoing, claimed_at: float
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
