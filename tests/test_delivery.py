"""Sending through a real SMTP server that misbehaves: retries, failures, restarts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update
from support import (
    SUBSCRIBE,
    Running,
    SMTPServer,
    act_on_signups,
    emails_for,
    free_port,
    make_list,
    queue_confirmations,
    serve_app,
)

from service.db import Database
from service.mail import SMTPMailer
from service.models import OutboxMessage, OutboxStatus, utcnow
from service.settings import Settings
from service.worker import OutboxWorker


async def outbox(db: Database) -> list[OutboxMessage]:
    async with db.read() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_temporary_failures_are_retried_and_delivered_once(
    app: Running, smtp: SMTPServer
) -> None:
    smtp.fail_next("421 4.3.2 Service not available", "451 4.7.1 Greylisted, try later", "drop")
    response = await app.client.post(SUBSCRIBE, json={"email": "retry@example.com"})
    assert response.status_code == 202

    [mail] = await smtp.wait_for(1)
    await asyncio.sleep(0.3)  # longer than the largest retry delay: nothing more may come
    assert len(smtp.received) == 1
    # Four attempts, all carrying the same Message-ID; the last one was accepted.
    assert len(smtp.handler.attempted_ids) == 4
    assert set(smtp.handler.attempted_ids) == {mail.message["Message-ID"]}
    [row] = await outbox(app.db)
    assert row.status == OutboxStatus.SENT
    assert row.attempts == 4
    assert row.sent_at is not None and row.lease_until is None


async def test_permanent_failure_is_marked_failed_with_the_reason(
    app: Running, smtp: SMTPServer
) -> None:
    smtp.fail_next("550 5.1.1 No such user here")
    await app.client.post(SUBSCRIBE, json={"email": "nobody@example.com"})

    async def failed() -> bool:
        rows = await outbox(app.db)
        return bool(rows) and rows[0].status == OutboxStatus.FAILED

    await wait_until(failed)
    [row] = await outbox(app.db)
    assert (
        row.last_error is not None and "550" in row.last_error and "No such user" in row.last_error
    )
    assert row.attempts == 1
    await asyncio.sleep(0.3)
    assert len(smtp.handler.attempted_ids) == 1 and smtp.received == []


async def test_restart_sends_what_was_left_in_the_outbox(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    # First run: the SMTP server is unreachable, so the confirmation stays queued.
    unreachable = settings.replace(smtp_port=free_port(), retry_base=60.0, retry_max_delay=60.0)
    async with serve_app(unreachable) as first:
        assert (
            await first.client.post(SUBSCRIBE, json={"email": "later@example.com"})
        ).status_code == 202

        async def tried() -> bool:
            rows = await outbox(first.db)
            return bool(rows) and rows[0].attempts >= 1 and rows[0].status == OutboxStatus.QUEUED

        await wait_until(tried)
        [row] = await outbox(first.db)
        assert row.last_error  # why it was not sent is kept
    assert smtp.received == []

    # A row another process claimed and then died with (status "sending", lease run out).
    async with serve_app(settings.replace(run_worker=False)) as idle:
        await idle.client.post(SUBSCRIBE, json={"email": "orphan@example.com"})
        assert await act_on_signups(settings) == 1
        async with idle.db.write() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.to_address == "orphan@example.com")
                .values(status=OutboxStatus.SENDING, lease_until=utcnow() - timedelta(seconds=1))
            )
        # Make the first row due now rather than in a minute.
        async with idle.db.write() as session:
            await session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    assert smtp.received == []

    # Second run, SMTP reachable: both leftovers go out, once each.
    async with serve_app(settings) as second:
        received = await smtp.wait_for(2)
        await asyncio.sleep(0.3)
        assert sorted(m.rcpt_tos[0] for m in smtp.received) == [
            "later@example.com",
            "orphan@example.com",
        ]
        assert len(received) == 2
        assert {r.status for r in await outbox(second.db)} == {OutboxStatus.SENT}


async def test_concurrent_workers_never_send_a_message_twice(
    settings: Settings, smtp: SMTPServer
) -> None:
    """Three workers drain one SQLite outbox at once: every message exactly once."""
    await queue_confirmations(settings, 60)
    db = Database.from_url(settings.database_url)
    try:
        emails = emails_for(settings)
        workers = [OutboxWorker(db, SMTPMailer(settings), emails, settings) for _ in range(3)]

        async def drain(worker: OutboxWorker) -> int:
            total = 0
            while handled := await worker.drain_once():
                total += handled
            return total

        counts = await asyncio.gather(*(drain(w) for w in workers))
        assert sum(counts) == 60
        assert len(smtp.received) == 60
        ids = [m.message["Message-ID"] for m in smtp.received]
        assert len(set(ids)) == 60
        assert sorted(m.rcpt_tos[0] for m in smtp.received) == sorted(
            f"reader{i}@example.com" for i in range(60)
        )
        assert {r.status for r in await outbox(db)} == {OutboxStatus.SENT}
    finally:
        await db.dispose()


async def test_unsubscribing_cancels_a_confirmation_not_yet_sent(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings.replace(run_worker=False)) as running:
        await running.client.post(SUBSCRIBE, json={"email": "changed-mind@example.com"})
        assert await act_on_signups(settings) == 1
        [row] = await outbox(running.db)
        url = emails_for(settings).unsubscribe_url(row.subscription_id or 0)
        response = await running.client.post(running.local(url))
        assert response.status_code == 200
        [row] = await outbox(running.db)
        assert row.status == OutboxStatus.CANCELLED


async def test_temporary_failures_are_retried_until_the_deadline_not_a_backoff_before(
    settings: Settings, smtp: SMTPServer
) -> None:
    """NEWSLETTER_RETRY_DEADLINE: a message still undelivered this long after it was
    queued is marked failed; until then it is tried again, the last time at the deadline,
    even when the next backoff would reach past it."""
    deadline = 3600.0
    [message_id] = await queue_confirmations(settings, 1)
    db = Database.from_url(settings.database_url)
    try:
        async with db.write() as session:  # queued almost an hour ago
            await session.execute(
                update(OutboxMessage).values(created_at=utcnow() - timedelta(seconds=deadline - 1))
            )
    finally:
        await db.dispose()
    smtp.fail_next("451 4.7.1 Try again later")
    # The next backoff (at least 30 s) would end past the deadline, a second away.
    patient = settings.replace(retry_base=60.0, retry_max_delay=60.0, retry_deadline=deadline)
    async with serve_app(patient) as running:
        [mail] = await smtp.wait_for(1, timeout=30)
        [row] = await outbox(running.db)
    assert mail.message["Message-ID"] == message_id
    assert row.status == OutboxStatus.SENT and row.attempts == 2
    assert row.sent_at is not None
    assert row.sent_at >= row.created_at + timedelta(seconds=deadline)  # tried at the deadline


async def test_a_message_still_failing_at_the_deadline_is_marked_failed(
    settings: Settings, smtp: SMTPServer
) -> None:
    deadline = 3600.0
    await queue_confirmations(settings, 1)
    db = Database.from_url(settings.database_url)
    try:
        async with db.write() as session:  # queued just over an hour ago
            await session.execute(
                update(OutboxMessage).values(created_at=utcnow() - timedelta(seconds=deadline + 1))
            )
    finally:
        await db.dispose()
    smtp.fail_next("451 4.7.1 Try again later")
    async with serve_app(settings.replace(retry_deadline=deadline)) as running:

        async def failed() -> bool:
            rows = await outbox(running.db)
            return rows[0].status == OutboxStatus.FAILED

        await wait_until(failed)
        [row] = await outbox(running.db)
    assert row.last_error == "gave up: 451 4.7.1 Try again later" and row.attempts == 1
    assert smtp.received == []
