"""`newsletter backup`: a copy of the SQLite database taken while the service serves.

The server is a process of its own, as in production: `newsletter serve` takes signups
(its worker acting on them meanwhile), and `newsletter backup` runs beside it, from the
test's process. The copy opens, passes its check, and holds every signup answered 202 before the
backup started.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from support import SUBSCRIBE, SMTPServer, free_port, make_list, migrate, process_env, run_cli

from service.settings import Settings


def start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def addresses_in(path: Path) -> set[str]:
    # mode=ro: the test must not change the backup it checks.
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        rows = conn.execute(
            "SELECT email FROM signup_requests UNION SELECT email FROM subscribers"
        ).fetchall()
    return {email for (email,) in rows}


async def test_a_backup_taken_under_load_holds_every_signup_answered_before_it(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    path = tmp_path / "newsletter.db"
    db_url = f"sqlite+aiosqlite:///{path}"
    await migrate(db_url)
    env = process_env(db_url, smtp, NEWSLETTER_RATE_LIMIT_IP="", NEWSLETTER_RATE_LIMIT_LIST="")
    await make_list(Settings.from_env(env))
    port = free_port()
    server = start(env, port, tmp_path / "server.log")
    accepted: list[str] = []
    stop, enough = asyncio.Event(), asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                assert server.poll() is None and time.monotonic() < deadline
                await asyncio.sleep(0.05)

            async def sign_up(lane: int) -> None:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    email = f"leser{lane}.{i}@example.com"
                    answer = await client.post(SUBSCRIBE, json={"email": email})
                    assert answer.status_code == 202, answer.text
                    accepted.append(email)
                    if len(accepted) == 150:
                        enough.set()

            load = [asyncio.create_task(sign_up(lane)) for lane in range(8)]
            await enough.wait()
            before = set(accepted)
            target = str(tmp_path / "backup.db")
            done = await asyncio.to_thread(run_cli, ["backup", target], env)
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*load)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    assert f"to {tmp_path / 'backup.db'}" in done.stdout
    assert len(accepted) > len(before)  # the load went on around the copy
    saved = addresses_in(tmp_path / "backup.db")
    assert before <= saved
    assert saved <= set(accepted)
    # It is a database the service can run on.
    checked = run_cli(
        ["migrate", "--check"], {"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'backup.db'}"}
    )
    assert checked.returncode == 0, checked.stderr
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_backup_into_a_folder_makes_a_dated_file_and_never_overwrites_unasked(
    tmp_path: Path,
) -> None:
    env = {"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'newsletter.db'}"}
    assert run_cli(["lists", "create", "daily", "--name", "Täglich"], env).returncode == 0
    folder = tmp_path / "backups"
    folder.mkdir()
    made = run_cli(["backup", str(folder)], env)
    assert made.returncode == 0, made.stderr
    [copy] = folder.glob("newsletter-*.db")
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("SELECT name FROM lists").fetchall() == [("Täglich",)]

    again = run_cli(["backup", str(copy)], env)
    assert again.returncode == 1
    assert "exists (--force replaces it)" in again.stderr
    assert run_cli(["backup", str(copy), "--force"], env).returncode == 0
    assert [p.name for p in folder.iterdir()] == [copy.name]  # no partial file left

    missing = run_cli(["backup", str(folder)], {"NEWSLETTER_DATABASE_URL": "sqlite:///nope.db"})
    assert missing.returncode == 1
    assert "there is no database file at" in missing.stderr


def test_backup_on_postgresql_says_to_use_pg_dump() -> None:
    env = {"NEWSLETTER_DATABASE_URL": "postgresql://user:secret@db.internal/news"}
    told = run_cli(["backup", "/tmp/x.db"], env)  # noqa: S108 - never written
    assert told.returncode == 2
    assert "pg_dump" in told.stderr and "pg_restore" in told.stderr
    assert "secret" not in told.stderr
