"""`newsletter serve` on a SQLite file it cannot write, and on a disk that fills up.

From outside, as an operator meets it: the process starts, ``/readyz`` says it cannot
write and why, every request that would write answers 503 with Retry-After and a message
on a connection that stays open, nothing answered 202 is lost, and once the cause is gone
the same process heals by itself (no restart).

The faults are real: the file is made read-only with ``chmod``, or, when the tests run as
root (whom file modes do not stop), immutable with ``chattr +i``; the full disk is a small
tmpfs filled to the last byte (mounting one needs root: without it that test is skipped).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from conftest import POSTGRES
from sqlalchemy import select
from sqlalchemy.engine import make_url
from support import (
    SUBSCRIBE,
    SMTPServer,
    free_port,
    fresh_postgres_database,
    make_list,
    migrate,
    process_env,
    serve_app,
)

from service.db import Database
from service.models import SignupRequest, Subscriber
from service.settings import Settings

ROOT = os.geteuid() == 0


def serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def command(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@asynccontextmanager
async def serving(env: dict[str, str], log: Path) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    proc = serve(env, port, log)
    try:
        # One connection, so a refusal that closed it would show (see same_connection).
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=20, limits=limits
        ) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "the server exited during start-up"
                assert time.monotonic() < deadline, "the server did not start"
                await asyncio.sleep(0.05)
            yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


async def ready_again(client: httpx.AsyncClient) -> httpx.Response:
    deadline = time.monotonic() + 30
    while (ready := await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, ready.text
        await asyncio.sleep(0.2)
    return ready


async def assert_refused_while_sick(
    client: httpx.AsyncClient, reason: str, words: str, squeeze: Callable[[], object] = list
) -> None:
    """``squeeze()`` runs before each request: it takes back what the last one freed."""
    squeeze()
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": reason, "schema": "ok"}
    assert int(ready.headers["retry-after"]) > 0

    squeeze()
    signup = await client.post(SUBSCRIBE, json={"email": "während@example.com"})
    assert signup.status_code == 503, signup.text
    assert signup.json()["error"] == "unavailable"
    assert words in signup.json()["message"]
    assert int(signup.headers["retry-after"]) >= 1
    assert signup.headers.get("connection") != "close"

    # A reader's browser posting the hosted form gets a page saying the same.
    squeeze()
    page = await client.post(
        "/subscribe/daily",
        data={"email": "leser@example.com"},
        headers={"Accept": "text/html", "Sec-Fetch-Site": "same-origin"},
    )
    assert page.status_code == 503, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert words in page.text
    assert "retry-after" in page.headers

    # The connection the refusals came on still serves.
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert local_port(health) == local_port(signup)


async def stored_addresses(db_url: str) -> set[str]:
    db = Database.from_url(db_url)
    try:
        async with db.read() as session:
            taken = set((await session.scalars(select(SignupRequest.email))).all())
            acted = set((await session.scalars(select(Subscriber.email))).all())
    finally:
        await db.dispose()
    return taken | acted


# --- a read-only database file --------------------------------------------------------


@contextmanager
def read_only(paths: list[Path]) -> Iterator[None]:
    """Make ``paths`` unwritable for the server, in a way that holds even for root."""
    existing = [p for p in paths if p.exists()]
    if ROOT:
        done = subprocess.run([command("chattr"), "+i", *map(str, existing)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"running as root and chattr +i is refused: {done.stderr.decode()}")
    else:
        for p in existing:
            p.chmod(0o444)
    try:
        yield
    finally:
        writable(existing)


def writable(paths: list[Path]) -> None:
    if ROOT:
        subprocess.run([command("chattr"), "-i", *map(str, paths)], check=True)
    else:
        for p in paths:
            p.chmod(0o644)


async def test_a_read_only_database_file_is_reported_refused_with_503_and_healed(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    path = tmp_path / "newsletter.db"
    db_url = f"sqlite+aiosqlite:///{path}"
    await migrate(db_url)
    env = process_env(db_url, smtp, NEWSLETTER_RATE_LIMIT_IP="", NEWSLETTER_RATE_LIMIT_LIST="")
    await make_list(Settings.from_env(env))
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]

    with read_only(files):
        # Started on a file it cannot write, in a folder it can.
        async with serving(env, tmp_path / "server.log") as client:
            await assert_refused_while_sick(client, "read-only", "the database is read-only")
            writable(files)
            ready = await ready_again(client)  # the same process, no restart
            assert ready.json()["database"] == "ok"
            signup = await client.post(SUBSCRIBE, json={"email": "danach@example.com"})
            assert signup.status_code == 202, signup.text
            deadline = time.monotonic() + 30
            while not [m for m in smtp.received if m.rcpt_tos == ["danach@example.com"]]:
                assert time.monotonic() < deadline, "the confirmation was not sent"
                await asyncio.sleep(0.1)
    assert "danach@example.com" in await stored_addresses(db_url)
    assert "während@example.com" not in await stored_addresses(db_url)
    assert "Traceback" not in (tmp_path / "server.log").read_text()


# --- a full disk ----------------------------------------------------------------------


@contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    if not ROOT:
        pytest.skip("a full disk is a small tmpfs, and mounting one needs root")
    done = subprocess.run(
        [command("mount"), "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode()}")
    try:
        yield where
    finally:
        subprocess.run([command("umount"), "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Write to a file until the disk has no byte left (again: SQLite frees some when its
    connections are reopened and the last one removes the WAL)."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as out:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


async def test_a_full_disk_is_reported_refused_with_503_and_healed(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        db_url = f"sqlite+aiosqlite:///{disk / 'newsletter.db'}"
        await migrate(db_url)
        env = process_env(
            db_url,
            smtp,
            NEWSLETTER_RATE_LIMIT_IP="",
            NEWSLETTER_RATE_LIMIT_LIST="",
            NEWSLETTER_RUN_WORKER="false",  # the signups wait in the intake: easy to count
        )
        await make_list(Settings.from_env(env))
        async with serving(env, tmp_path / "server.log") as client:
            accepted = []
            for i in range(20):
                answer = await client.post(SUBSCRIBE, json={"email": f"vorher{i}@example.com"})
                assert answer.status_code == 202
                accepted.append(f"vorher{i}@example.com")
            # Until the WAL needs room it takes writes; then they are refused.
            for i in range(200):
                fill(disk)
                answer = await client.post(SUBSCRIBE, json={"email": f"voll{i}@example.com"})
                if answer.status_code == 503:
                    break
                assert answer.status_code == 202, answer.text
                accepted.append(f"voll{i}@example.com")
            await assert_refused_while_sick(
                client, "disk-full", "the disk holding the database", lambda: fill(disk)
            )
            (disk / "filler").unlink()
            await ready_again(client)
            answer = await client.post(SUBSCRIBE, json={"email": "danach@example.com"})
            assert answer.status_code == 202, answer.text
            accepted.append("danach@example.com")
        assert set(accepted) <= await stored_addresses(db_url)
    assert "Traceback" not in (tmp_path / "server.log").read_text()


# --- a PostgreSQL that turns read-only (a standby after a failover, or by setting) -------


async def test_a_read_only_postgresql_is_refused_with_503_and_healed(smtp: SMTPServer) -> None:
    if not POSTGRES:
        pytest.skip("PostgreSQL: set NEWSLETTER_TEST_POSTGRES_URL to run this")
    async with fresh_postgres_database(POSTGRES) as url:
        await migrate(url)
        env = process_env(url, smtp, NEWSLETTER_RATE_LIMIT_IP="", NEWSLETTER_RATE_LIMIT_LIST="")
        settings = Settings.from_env(env)
        await make_list(settings)
        name = make_url(url).database
        admin = await asyncpg.connect(
            make_url(POSTGRES).set(drivername="postgresql").render_as_string(False)
        )
        try:
            async with serve_app(settings) as running:
                client = running.client
                assert (
                    await client.post(SUBSCRIBE, json={"email": "a@example.com"})
                ).status_code == 202
                await admin.execute(
                    f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
                )
                # As in a failover to a standby: the connections drop, the new ones are
                # read-only.
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
                ready = await client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["database"] == "read-only"
                signup = await client.post(SUBSCRIBE, json={"email": "b@example.com"})
                assert signup.status_code == 503
                assert "the database is read-only" in signup.json()["message"]
                await admin.execute(
                    f'ALTER DATABASE "{name}" SET default_transaction_read_only = off'
                )
                assert (await client.get("/readyz")).status_code == 200
                signup = await client.post(SUBSCRIBE, json={"email": "c@example.com"})
                assert signup.status_code == 202
        finally:
            await admin.close()
        assert {"a@example.com", "c@example.com"} <= await stored_addresses(url)
