"""What SQLite needs that PostgreSQL does not: connection settings, how write transactions
begin, and a fast path for the hottest batched writes.

Every connection: WAL (readers never block the writer), a busy timeout, foreign keys on,
and no BEGIN from the driver itself. ``synchronous=FULL``: each commit syncs the WAL to
disk before the commit returns, so a signup answered 202 survives a power cut; with group
commit (``service.intake``) one sync carries a whole batch of signups. A database URL
ending in ``?synchronous=normal`` trades that for speed (a power cut may then roll back the
last commits; a crash of the process alone never does).

Write transactions begin with ``BEGIN IMMEDIATE``: a deferred transaction that reads and
then writes can fail with SQLITE_BUSY at once when another process wrote in between,
whatever the busy timeout; taking the write lock up front makes writers queue instead.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import OperationalError

from service.db import faults

__all__ = [
    "IMMEDIATE",
    "BatchWriter",
    "checkpoint",
    "configure",
    "missing_file",
    "set_foreign_keys",
    "synchronous",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

IMMEDIATE = "newsletter_sqlite_immediate"  # execution option: begin with BEGIN IMMEDIATE
BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_EVERY = 100  # commits on the event loop between two WAL checkpoints
CHECKPOINT_WAIT_MS = 50  # how long a checkpoint waits for readers before it gives up


SYNCHRONOUS = ("full", "normal")  # the first is the default


def synchronous(url: str | URL) -> tuple[URL, str]:
    """The URL without its ``synchronous`` query option (the driver knows no such
    option), and the option (``full`` unless it says ``normal``)."""
    parsed = make_url(url)
    mode = str(parsed.query.get("synchronous", SYNCHRONOUS[0])).lower()
    if mode not in SYNCHRONOUS:
        raise ValueError(f"synchronous={mode}: expected one of {', '.join(SYNCHRONOUS)}")
    return parsed.difference_update_query(["synchronous"]), mode


def configure(
    engine: Engine,
    *,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    checkpoints: bool = True,
    sync: str = SYNCHRONOUS[0],
) -> None:
    """Set up every connection ``engine`` makes, and how its transactions begin."""
    assert sync in SYNCHRONOUS

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # _begin chooses the kind of BEGIN
        cursor = dbapi_connection.cursor()
        # First, so that even switching to WAL waits for another connection's lock.
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sync.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        if busy_timeout_ms != BUSY_TIMEOUT_MS:
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        cursor.close()

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _begin)
    event.listen(engine, "handle_error", faults.on_error)


def _begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def set_foreign_keys(conn: Connection, on: bool) -> None:
    # A PRAGMA outside any transaction (inside one, foreign_keys is silently ignored).
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    cursor.close()


class _Busy(Exception):
    """Another process holds the write lock."""


class BatchWriter:
    """Runs short synchronous write transactions for `Database.write_batch`.

    Through aiosqlite every statement is a trip to its thread and back; on a busy 2-core
    machine each trip costs more than the statement. A batch of signups is a few hundred
    microseconds of work, so it runs right on the event loop, on a connection of its own
    that never waits: if another process holds the write lock, the batch goes to a thread
    instead and waits there, like any other writer. The loop's connection also never
    checkpoints the WAL, which syncs the disk and can take milliseconds: every
    ``CHECKPOINT_EVERY`` commits, the thread does, before the next batch (see
    `checkpoint`): one running beside the writes would never catch up with them, and the
    WAL would grow for as long as they kept coming.

    The caller queues this process's writers (`Database`'s writer lock), so the loop's
    connection is only ever used by one transaction at a time.
    """

    def __init__(self, url: URL, *, echo: bool = False, sync: str = SYNCHRONOUS[0]) -> None:
        url = url.set(drivername="sqlite")
        self._loop_engine = create_engine(url, echo=echo, pool_size=1, max_overflow=0)
        configure(self._loop_engine, busy_timeout_ms=0, checkpoints=False, sync=sync)
        self._thread_engine = create_engine(url, echo=echo)
        configure(self._thread_engine, sync=sync)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writes")
        self._loop_conn: Connection | None = None  # kept open: checking out costs as much
        self._commits = 0

    async def run(self, work: Callable[[Connection], T]) -> T:
        if self._loop_conn is None or self._loop_conn.invalidated:
            self._loop_conn = self._loop_engine.connect().execution_options(**{IMMEDIATE: True})
        try:
            result = _transaction(self._loop_conn, work, wait=False)
        except _Busy:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._in_thread, work)
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            # Still queued ahead of this process's other writers, so it need not wait for
            # them; the loop goes on meanwhile.
            await asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint_wal)
        return result

    def _in_thread(self, work: Callable[[Connection], T]) -> T:
        with self._thread_engine.connect() as conn:
            return _transaction(conn.execution_options(**{IMMEDIATE: True}), work)

    def _checkpoint_wal(self) -> None:
        try:
            if not checkpoint(self._thread_engine):
                log.info("WAL checkpoint did not finish (a reader was busy); next time")
        except Exception:
            log.exception("WAL checkpoint failed (the next one will try again)")

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown)
        if self._loop_conn is not None:
            self._loop_conn.close()
        self._loop_engine.dispose()
        self._thread_engine.dispose()


def checkpoint(engine: Engine) -> bool:
    """Copy the WAL into the database file and have the next write start it over (RESTART);
    False if a reader kept it from finishing.

    It holds writers off while it waits for readers (an export can read for minutes), so
    it waits only ``CHECKPOINT_WAIT_MS``, and the next one tries again.
    """
    with engine.connect() as conn:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS:d}")
        try:
            # Read to the end: a result left open keeps a read lock, and the WAL could
            # never start over.
            busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").one()[0]
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
    return not busy


def _transaction(conn: Connection, work: Callable[[Connection], T], *, wait: bool = True) -> T:
    try:
        transaction = conn.begin()
    except OperationalError as exc:
        code = getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF  # SQLITE_BUSY_SNAPSHOT too
        if not wait and code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise _Busy from exc
        raise
    with transaction:
        return work(conn)


def missing_file(url: str) -> bool:
    """A SQLite URL whose file does not exist yet (connecting would create it); False for
    any other database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return False
    path = parsed.database
    return bool(path) and path != ":memory:" and not Path(str(path)).expanduser().exists()
