"""Engines per backend, and the two kinds of transaction the service uses.

SQLite: WAL (readers never block the writer), a busy timeout, foreign keys on, and write
transactions opened with ``BEGIN IMMEDIATE``. A deferred transaction that reads and then
writes can fail with SQLITE_BUSY at once when another process wrote in between, whatever
the busy timeout; taking the write lock up front makes writers queue instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from service.models import Base

__all__ = ["Database", "make_engine"]

_IMMEDIATE = "newsletter_sqlite_immediate"


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # The driver must not emit its own BEGIN: _sqlite_begin chooses the kind.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The engine plus session factories; one per app, owned by the lifespan."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time. This process's writers queue here, in order,
        # rather than in SQLite's busy handler, which sleeps between retries (up to 100 ms
        # each) and under load turns a millisecond's wait into seconds. Other processes
        # on the same file still meet the busy timeout.
        self._writer = asyncio.Lock() if self.is_sqlite else None

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading; nothing it does is committed."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._writer or nullcontext(), self.sessions() as session, session.begin():
            await session.connection(execution_options={_IMMEDIATE: True})
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
