"""`newsletter serve` killed with SIGKILL in the middle of a burst of subscribes.

A 202 is sent only after the signup is committed (to the intake that a worker acts on),
so a crash can lose a request that was never answered, never one that was. After the restart, every
accepted address is in the database and its confirmation goes out once. With the
in-process worker sending during the burst, a confirmation the SMTP server had accepted
in the instant before the kill, before the worker could record it, goes out again after
the lease (same Message-ID); the test allows exactly that and nothing else.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO

import httpx
import pytest
from sqlalchemy import func, select
from support import SUBSCRIBE, SMTPServer, free_port, make_list, process_env

from service.db import Database
from service.models import (
    OutboxMessage,
    OutboxStatus,
    SignupRequest,
    Subscriber,
    Subscription,
)
from service.settings import Settings

BURST = 200
KILL_AFTER = 50  # accepted signups before the kill


def serve(env: dict[str, str], port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def wait_healthy(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "the server exited during start-up"
        assert time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("worker_in_burst", [False, True], ids=["worker-off", "worker-on"])
@pytest.mark.scenario
async def test_every_accepted_signup_survives_kill_9_and_is_confirmed_once(
    db_url: str, smtp: SMTPServer, tmp_path: Path, worker_in_burst: bool
) -> None:
    env = process_env(
        db_url,
        smtp,
        NEWSLETTER_WORKER_LEASE="2s",
        # One client sends the whole burst: rate limits are not what this tests.
        NEWSLETTER_RATE_LIMIT_IP="",
        NEWSLETTER_RATE_LIMIT_LIST="",
    )
    await make_list(Settings.from_env(env))
    port = free_port()
    accepted: list[str] = []
    answers: Counter[int | str] = Counter()
    limits = httpx.Limits(max_connections=20)
    with (tmp_path / "first.log").open("wb") as log:
        first = serve({**env, "NEWSLETTER_RUN_WORKER": str(worker_in_burst)}, port, log)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10, limits=limits
        ) as client:
            await wait_healthy(client, first)

            async def subscribe(i: int) -> None:
                email = f"burst{i}@example.com"
                try:
                    response = await client.post(SUBSCRIBE, json={"email": email})
                except httpx.TransportError:
                    answers["no answer"] += 1
                    return
                answers[response.status_code] += 1
                if response.status_code == 202:
                    accepted.append(email)

            burst = [asyncio.create_task(subscribe(i)) for i in range(BURST)]
            while len(accepted) < KILL_AFTER:
                assert first.poll() is None
                assert set(answers) <= {202, "no answer"}, answers
                await asyncio.sleep(0.001)
            first.send_signal(signal.SIGKILL)
            await asyncio.gather(*burst)
    finally:
        if first.poll() is None:
            first.kill()
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    assert set(answers) <= {202, "no answer"}, answers
    assert KILL_AFTER <= len(accepted) < BURST, answers  # the kill landed mid-burst

    # Restart with the worker on and let it send whatever is left.
    db = Database.from_url(db_url)
    with (tmp_path / "second.log").open("wb") as log:
        second = serve({**env, "NEWSLETTER_RUN_WORKER": "true"}, port, log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await wait_healthy(client, second)
        deadline = time.monotonic() + 300
        while True:
            async with db.read() as session:
                rows = list((await session.scalars(select(OutboxMessage))).all())
                waiting = await session.scalar(select(func.count()).select_from(SignupRequest))
            if not waiting and rows and all(r.status == OutboxStatus.SENT for r in rows):
                break
            assert time.monotonic() < deadline, Counter(r.status for r in rows)
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # past the lease: any stray resend would show now

        async with db.read() as session:
            stored = set(
                (
                    await session.scalars(
                        select(Subscriber.email).join(
                            Subscription, Subscription.subscriber_id == Subscriber.id
                        )
                    )
                ).all()
            )
        assert set(accepted) <= stored, "a signup answered 202 is missing"
        by_address = Counter(r.to_address for r in rows)
        assert all(by_address[email] == 1 for email in accepted), "one confirmation each"

        delivered = Counter(m.rcpt_tos[0] for m in smtp.received)
        assert set(delivered) == set(by_address)  # every queued confirmation went out
        repeats = {email for email, n in delivered.items() if n > 1}
        if worker_in_burst:
            in_flight = {r.to_address for r in rows if r.attempts > 1}
            concurrency = Settings.from_env(env).worker_concurrency
            assert repeats <= in_flight and len(repeats) <= concurrency
            assert all(delivered[email] == 2 for email in repeats)
        else:
            assert repeats == set()
        for received in smtp.received:  # a repeat is the same message, same Message-ID
            [row] = [r for r in rows if r.to_address == received.rcpt_tos[0]]
            assert received.message["Message-ID"] == row.message_id
        print(
            f"\n{len(accepted)} of {BURST} signups answered 202 before the kill "
            f"({answers['no answer']} unanswered), {len(stored)} stored, "
            f"{len(rows)} confirmations sent, {len(repeats)} sent twice"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal it caught
        assert second.wait(timeout=30) in {0, -signal.SIGTERM}
        await db.dispose()
    assert "Traceback" not in (tmp_path / "second.log").read_text()
