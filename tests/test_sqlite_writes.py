"""Batched writes on SQLite run on the event loop, and never make it wait for a lock."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection

from service import limits
from service.db import Database, Writes
from service.db.sqlite import (
    BUSY_TIMEOUT_MS,
    CHECKPOINT_EVERY,
    CHECKPOINT_WAIT_MS,
    checkpoint,
    configure,
)
from service.settings import Rate

RATES = (Rate(5, 60),)


def count_a_hit() -> Writes[float | None]:
    return limits.add_one("client:203.0.113.9", RATES, datetime.now(UTC))


async def migrated(tmp_path: Path) -> tuple[Database, Path]:
    path = tmp_path / "writes.db"
    db = Database.from_url(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    return db, path


def stored_hits(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        found = conn.execute("SELECT coalesce(sum(hits), 0) FROM rate_counters").fetchone()
    return int(found[0])


async def test_batched_writes_count_and_commit(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    try:
        waits = [await db.write_batch(count_a_hit) for _ in range(7)]
        assert waits[:5] == [None] * 5
        assert all(wait is not None and 0 < wait <= 61 for wait in waits[5:])
        assert stored_hits(path) == 7
    finally:
        await db.dispose()


async def test_a_batch_waits_off_the_loop_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    db, path = await migrated(tmp_path)
    await db.write_batch(count_a_hit)  # the loop's connection is open
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # as another process's writer would
        other.execute("DELETE FROM rate_counters")
        writing = asyncio.ensure_future(db.write_batch(count_a_hit))

        # The event loop goes on meanwhile: the batch waits in a thread, not on the loop.
        # (Waiting on the loop, it would hold the loop until its busy timeout and then
        # fail: done, with "database is locked", before these sleeps ended.)
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert not writing.done()

        other.execute("COMMIT")
        assert await asyncio.wait_for(writing, 10) is None
        assert stored_hits(path) == 1  # written after the other writer's delete

        await db.write_batch(count_a_hit)  # and the loop's connection is still good
        assert stored_hits(path) == 2
    finally:
        other.close()
        await db.dispose()


async def test_the_wal_starts_over_while_batches_keep_coming(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    try:
        commits = 10 * CHECKPOINT_EVERY
        for _ in range(commits):
            await db.write_batch(count_a_hit)
        # Every commit appends at least one page to the WAL: had it never started over,
        # it would hold at least that many pages.
        assert (path.parent / f"{path.name}-wal").stat().st_size < commits * 4096
        assert stored_hits(path) == commits
    finally:
        await db.dispose()


async def test_a_checkpoint_gives_up_soon_while_a_reader_holds_the_wal(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    engine = create_engine(f"sqlite:///{path}")
    configure(engine)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        for _ in range(10):
            await db.write_batch(count_a_hit)
        reader.execute("BEGIN")  # e.g. an export, reading what was just written
        reader.execute("SELECT count(*) FROM rate_counters").fetchone()

        # The checkpoint holds writers off while it waits for the reader: not for long. It
        # gives up (the reader holds on until it has) and waits with a busy timeout of
        # its own, well short of the one writers wait with.
        waits: list[int] = []

        @event.listens_for(engine, "before_cursor_execute")
        def note_wait(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
            if "wal_checkpoint" in statement:
                waits.append(cursor.connection.execute("PRAGMA busy_timeout").fetchone()[0])

        finished = await asyncio.get_running_loop().run_in_executor(None, checkpoint, engine)
        assert not finished
        assert waits == [CHECKPOINT_WAIT_MS] and CHECKPOINT_WAIT_MS * 10 <= BUSY_TIMEOUT_MS
        with engine.connect() as conn:  # and writers wait as long as before, afterwards
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS

        reader.execute("COMMIT")
        assert await asyncio.get_running_loop().run_in_executor(None, checkpoint, engine)
    finally:
        reader.close()
        engine.dispose()
        await db.dispose()


@pytest.mark.parametrize(("query", "expected"), [("", 2), ("?synchronous=normal", 1)])
async def test_every_write_is_synced_to_disk_before_it_returns_unless_told_otherwise(
    tmp_path: Path, query: str, expected: int
) -> None:
    """A signup is answered 202 after its batch commits: with synchronous=FULL (2) the WAL
    is on disk by then, so a power cut cannot take it back."""
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}{query}")
    seen: list[int] = []

    def on_begin(conn: Connection) -> None:
        seen.append(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

    event.listen(Engine, "begin", on_begin)
    try:
        await db.migrate()
        await db.write_batch(count_a_hit)  # the batch writer's connection on the loop
        async with db.write() as session:  # the async engine's
            await session.execute(text("DELETE FROM rate_counters"))
    finally:
        event.remove(Engine, "begin", on_begin)
        await db.dispose()
    assert len(seen) >= 3 and set(seen) == {expected}


def test_a_synchronous_option_other_than_full_or_normal_is_refused() -> None:
    with pytest.raises(ValueError, match="synchronous=off: expected one of full, normal"):
        Database.from_url("sqlite+aiosqlite:///x.db?synchronous=off")
