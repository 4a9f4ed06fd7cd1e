"""Telling workers in other processes that work is waiting, so that none waits for its poll.

- PostgreSQL: ``NOTIFY`` on one channel, sent in the transaction that stored the work (so
  it is heard once that is committed, and never for work rolled back); each worker keeps
  one connection that ``LISTEN``s. If that connection is lost, the worker polls as before
  and listens again when it can.
- SQLite: a small file next to the database (``<file>-work``) whose modification time the
  writer touches after the commit; a worker looks at it every ``FILE_POLL`` seconds, a
  ``stat`` that costs microseconds and touches neither the database nor its locks.

Either way the signal only makes a worker look sooner: it still finds the work in the
database, and the poll interval stays as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

__all__ = ["CHANNEL", "FILE_POLL", "listen", "notify_statement", "signal_file", "touch"]

log = logging.getLogger(__name__)

CHANNEL = "newsletter_work"
FILE_POLL = 0.01  # seconds between two looks at the SQLite signal file
RELISTEN = 5.0  # seconds before a lost PostgreSQL listener tries again


def notify_statement() -> Executable:
    """PostgreSQL: tell the listening workers, once this transaction commits."""
    return select(func.pg_notify(CHANNEL, ""))


def signal_file(url: URL) -> Path | None:
    """SQLite: the file whose touch says "work is waiting" (None for a database in memory)."""
    if not url.database or url.database == ":memory:":
        return None
    return Path(f"{Path(url.database).expanduser()}-work")


def touch(path: Path) -> None:
    """SQLite: announce work (after the commit); never fails the write that announces."""
    try:
        os.utime(path)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            path.touch()
    except OSError:
        log.debug("could not touch %s", path, exc_info=True)


@contextlib.asynccontextmanager
async def listen(
    engine: AsyncEngine, path: Path | None, heard: Callable[[], None]
) -> AsyncIterator[None]:
    """Call ``heard`` whenever another process announces work, while the block runs."""
    watch = _watch_file(path, heard) if engine.dialect.name == "sqlite" else _listen(engine, heard)
    task = asyncio.create_task(watch, name="work-signals")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _watch_file(path: Path | None, heard: Callable[[], None]) -> None:
    if path is None:
        return
    seen = _mtime(path)
    while True:
        await asyncio.sleep(FILE_POLL)
        now = _mtime(path)
        if now != seen:
            seen = now
            heard()


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


async def _listen(engine: AsyncEngine, heard: Callable[[], None]) -> None:
    def on_notify(*_: Any) -> None:
        heard()

    while True:
        try:
            async with engine.connect() as conn:
                await _listen_on(conn, on_notify)
            log.warning("lost the connection that listens for new work; polling meanwhile")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("cannot listen for new work; polling meanwhile", exc_info=True)
        await asyncio.sleep(RELISTEN)


async def _listen_on(conn: AsyncConnection, on_notify: Callable[..., None]) -> None:
    """LISTEN on ``conn`` until the connection is lost."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_lost(_: object) -> None:
        if not lost.done():
            lost.set_result(None)

    await raw.add_listener(CHANNEL, on_notify)
    raw.add_termination_listener(on_lost)
    on_notify()  # anything announced while nobody listened
    try:
        await lost
    finally:
        with contextlib.suppress(Exception):
            await raw.remove_listener(CHANNEL, on_notify)
