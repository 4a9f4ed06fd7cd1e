"""`newsletter worker` processes draining one outbox, one of them killed with SIGKILL.

What holds (see service/worker.py): no message is lost, and a message is delivered more
than once only if a worker died between the SMTP server accepting it and the worker
recording that; such a repeat carries the same Message-ID. The SMTP server here dedupes
nothing, so the test counts Message-IDs and checks that every repeat is a message the
killed worker had claimed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import POSTGRES
from sqlalchemy import func, select
from support import (
    SMTPServer,
    free_port,
    fresh_postgres_database,
    process_env,
    queue_confirmations,
)

from service.db import Database
from service.models import (
    OutboxMessage,
    OutboxStatus,
)
from service.settings import Settings
from service.worker import BATCH


@contextmanager
def workers(count: int, env: dict[str, str], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` `newsletter worker` processes; whatever is still running is killed after."""
    procs = []
    for i in range(count):
        with (logs / f"worker{i}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "service", "worker"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def outbox_counts(db: Database) -> dict[OutboxStatus, int]:
    async with db.read() as session:
        result = await session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
        return {status: n for status, n in result}


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    if not POSTGRES:
        pytest.skip(
            "several worker processes on one outbox is the PostgreSQL deployment: "
            "set NEWSLETTER_TEST_POSTGRES_URL to run this"
        )
    async with fresh_postgres_database(POSTGRES) as url:
        yield url


@pytest.mark.scenario
async def test_four_workers_drain_800_emails_while_one_is_killed(
    postgres_url: str, smtp: SMTPServer, tmp_path: Path
) -> None:
    total, lease = 800, 3.0
    env = process_env(postgres_url, smtp, NEWSLETTER_WORKER_LEASE=f"{lease}s")
    settings = Settings.from_env(env)
    expected = await queue_confirmations(settings, total)
    # A relay that thinks a moment per message: workers spend their time sending, so the
    # one killed has a batch in hand (between two batches it would hold nothing).
    smtp.handler.delay = 0.005
    db = Database.from_url(postgres_url)
    started = time.monotonic()
    try:
        with workers(4, env, tmp_path) as procs:
            # Kill one worker once the run is well under way: it has a batch in hand.
            while len(smtp.received) < total // 4:
                assert time.monotonic() - started < 300, "workers are not sending"
                assert all(p.poll() is None for p in procs), "a worker exited"
                await asyncio.sleep(0.005)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(timeout=10)
            killed_at = len(smtp.received)

            # The others finish, the dead worker's rows included once its lease runs out.
            while (await outbox_counts(db)).get(OutboxStatus.SENT, 0) < total:
                assert time.monotonic() - started < 600, await outbox_counts(db)
                await asyncio.sleep(0.1)
            await asyncio.sleep(lease + 0.5)  # long enough for any stray resend to show

            for proc in procs[1:]:
                proc.send_signal(signal.SIGTERM)
            for proc in procs[1:]:
                assert proc.wait(timeout=30) == 0
        elapsed = time.monotonic() - started

        assert await outbox_counts(db) == {OutboxStatus.SENT: total}
        delivered = Counter(m.message["Message-ID"] for m in smtp.received)
        assert set(delivered) == set(expected), "a message was lost (or one not queued sent)"
        repeats = {mid for mid, n in delivered.items() if n > 1}
        async with db.read() as session:
            reclaimed = set(
                (
                    await session.scalars(
                        select(OutboxMessage.message_id).where(OutboxMessage.attempts > 1)
                    )
                ).all()
            )
        # Only the killed worker's claim (one batch) was taken over after its lease...
        assert 0 < len(reclaimed) <= BATCH
        # ...and a message can only have arrived twice if it was in that batch, in flight
        # (at most NEWSLETTER_WORKER_CONCURRENCY sends) when the kill landed.
        assert repeats <= reclaimed and len(repeats) <= settings.worker_concurrency
        assert all(n == 2 for mid, n in delivered.items() if mid in repeats)
        assert len(smtp.received) == total + len(repeats)
        # Pooled connections: a few per worker, not one per message.
        assert smtp.connection_count <= 4 * settings.worker_concurrency + 4
        print(
            f"\n{total} emails, 4 workers, one killed after {killed_at} deliveries: "
            f"{elapsed:.1f}s, {len(reclaimed)} rows taken over after the lease, "
            f"{len(repeats)} delivered twice, {smtp.connection_count} SMTP connections"
        )
        for i in range(1, 4):
            assert "Traceback" not in (tmp_path / f"worker{i}.log").read_text()
    finally:
        await db.dispose()


async def test_sigterm_finishes_the_mail_in_hand_and_gives_back_the_rest(
    db_url: str, smtp: SMTPServer, tmp_path: Path
) -> None:
    smtp.handler.delay = 0.05  # a slow relay, so the signal lands mid-batch
    env = process_env(db_url, smtp, NEWSLETTER_WORKER_CONCURRENCY="2", NEWSLETTER_LOG_LEVEL="INFO")
    settings = Settings.from_env(env)
    expected = await queue_confirmations(settings, 40)
    db = Database.from_url(db_url)
    try:
        with workers(1, env, tmp_path) as [proc]:
            while len(smtp.handler.attempted_ids) < 4:
                assert proc.poll() is None, (tmp_path / "worker0.log").read_text()
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        log = (tmp_path / "worker0.log").read_text()
        assert "outbox worker stopped" in log and "Traceback" not in log
        counts = await outbox_counts(db)
        assert set(counts) == {OutboxStatus.SENT, OutboxStatus.QUEUED}, counts
        # Everything the server accepted is recorded as sent; the rest waits, untried.
        assert counts[OutboxStatus.SENT] == len(smtp.received) < 40
        async with db.read() as session:
            waiting = (
                await session.scalars(
                    select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.QUEUED)
                )
            ).all()
        assert all(r.attempts == 0 and r.lease_until is None for r in waiting)
        sent = {m.message["Message-ID"] for m in smtp.received}
        assert sent | {r.message_id for r in waiting} == set(expected)
    finally:
        await db.dispose()


@pytest.mark.scenario
async def test_a_send_longer_than_the_lease_is_not_taken_over(
    db_url: str, smtp: SMTPServer, tmp_path: Path
) -> None:
    """The lease is renewed while the mail is in hand, so it can be short and still
    outlast a slow send: a second worker never takes over a live worker's message."""
    lease = 1.0
    smtp.handler.delay = 3 * lease  # each message takes three leases to be accepted
    env = process_env(db_url, smtp, NEWSLETTER_WORKER_LEASE=f"{lease}s")
    expected = await queue_confirmations(Settings.from_env(env), 3)
    db = Database.from_url(db_url)
    try:
        with workers(2, env, tmp_path) as procs:
            deadline = time.monotonic() + 120
            while (await outbox_counts(db)).get(OutboxStatus.SENT, 0) < 3:
                assert time.monotonic() < deadline, await outbox_counts(db)
                assert all(p.poll() is None for p in procs)
                await asyncio.sleep(0.1)
            await asyncio.sleep(lease + 0.5)  # long enough for a stray resend to show
        delivered = Counter(m.message["Message-ID"] for m in smtp.received)
        assert delivered == Counter(set(expected))  # each once
        assert Counter(smtp.handler.attempted_ids) == delivered
    finally:
        await db.dispose()


@pytest.mark.scenario
async def test_mail_of_a_killed_worker_is_taken_over_after_the_lease_and_counted(
    db_url: str, smtp: SMTPServer, tmp_path: Path
) -> None:
    lease = 2.0
    smtp.handler.delay = 1.0  # the worker is mid-send when it is killed
    env = process_env(
        db_url, smtp, NEWSLETTER_WORKER_LEASE=f"{lease}s", NEWSLETTER_WORKER_CONCURRENCY="2"
    )
    expected = await queue_confirmations(Settings.from_env(env), 4)
    db = Database.from_url(db_url)
    try:
        with workers(1, env, tmp_path) as [doomed]:
            while not smtp.handler.attempted_ids:
                assert doomed.poll() is None, (tmp_path / "worker0.log").read_text()
                await asyncio.sleep(0.01)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        killed = time.monotonic()
        in_hand = len(smtp.handler.attempted_ids)

        port = free_port()
        server = serve(env, port, tmp_path / "serve.log")
        try:
            deadline = time.monotonic() + 120
            while (await outbox_counts(db)).get(OutboxStatus.SENT, 0) < 4:
                assert time.monotonic() < deadline, await outbox_counts(db)
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                await asyncio.sleep(0.05)
            resent_after = smtp.handler.attempted_at[in_hand] - killed
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                metrics = (await client.get("/metrics")).text
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        async with db.read() as session:
            taken_over = await session.scalar(
                select(func.count()).where(OutboxMessage.attempts > 1)
            )
        # The dead worker had claimed all four (one batch); the server took them over once
        # its lease had run out, and says so.
        assert taken_over == 4
        assert "newsletter_outbox_lease_takeovers_total 4.0" in metrics
        delivered = Counter(m.message["Message-ID"] for m in smtp.received)
        assert set(delivered) == set(expected)
        # Only what was in flight at the kill can have arrived twice (same Message-ID).
        assert sum(delivered.values()) - 4 <= in_hand
        print(f"\nkilled with {in_hand} in flight; taken over and resent {resent_after:.1f}s later")
    finally:
        await db.dispose()
