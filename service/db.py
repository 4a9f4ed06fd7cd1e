"""Engines per backend, and the two kinds of transaction the service uses.

SQLite: WAL (readers never block the writer), a busy timeout, foreign keys on, and write
transactions opened with ``BEGIN IMMEDIATE``. A deferred transaction that reads and then
writes can fail with SQLITE_BUSY at once when another process wrote in between, whatever
the busy timeout; taking the write lock up front makes writers queue instead.

The schema comes from the Alembic migrations only (``service/schema.py``). ``migrate``
holds an exclusive lock while it runs (SQLite's write lock; a PostgreSQL advisory lock),
so processes that start together migrate one after the other, the later ones finding
nothing left to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from service import schema
from service.schema import BASELINE, Migrated, SchemaError, SchemaStatus

__all__ = ["Database", "Migrated", "SchemaError", "SchemaStatus", "make_engine"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_IMMEDIATE = "newsletter_sqlite_immediate"
_PG_MIGRATION_LOCK = 7_236_828_016_311_201_363  # any fixed bigint; pg_advisory_xact_lock key


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo)
        _sqlite_events(engine.sync_engine)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_events(engine: Engine) -> None:
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_begin)


def _sqlite_on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # The driver must not emit its own BEGIN: _sqlite_begin chooses the kind.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # First, so that even switching to WAL waits for another connection's lock.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_foreign_keys(conn: Connection, on: bool) -> None:
    # A PRAGMA outside any transaction (inside one, foreign_keys is silently ignored).
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
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
        # See write_sync: made on first use, closed by dispose().
        self._sync_engine: Engine | None = None
        self._sync_thread: ThreadPoolExecutor | None = None

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    async def migrate(self, revision: str = "head") -> Migrated:
        """Bring the schema to ``revision`` (default: the newest), in one transaction."""
        async with self._exclusive() as conn:
            return await conn.run_sync(schema.upgrade, revision)

    async def downgrade(self, revision: str) -> None:
        """Undo migrations down to ``revision`` (``"base"`` drops every table)."""
        async with self._exclusive() as conn:
            await conn.run_sync(schema.downgrade, revision)

    async def schema_status(self) -> SchemaStatus:
        """The database's revision and the newest one; raises if it cannot be reached."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(schema.status)

    async def prepare_schema(self, *, migrate: bool) -> None:
        """Migrate, or check that no migration is due; `SchemaError` says what to run.

        A schema a newer version migrated is used as it is (see `SchemaStatus.usable`).
        """
        status = await self.schema_status()  # reads only: no lock when nothing is due
        if status.is_current:
            return
        if status.newer:
            log.warning("%s; running on it unchanged", status.describe())
            return
        if migrate:
            done = await self.migrate()
            if done.adopted:
                log.warning(
                    "adopted a database made before migrations: stamped revision %s", BASELINE
                )
            if done.before != done.after:
                log.info("database schema migrated from %s to %s", done.before, done.after)
            return
        raise SchemaError(
            f"{status.describe()}. Run `newsletter migrate` first "
            "(or set NEWSLETTER_MIGRATE_ON_START=true)."
        )

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that no other migration runs beside.

        On SQLite, foreign keys are off meanwhile: a batch ALTER copies a table, drops the
        old one and renames the copy, and dropping a table with foreign keys on would
        cascade-delete the rows that refer to it. They are checked before the commit.
        """
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.run_sync(_sqlite_foreign_keys, False)
            try:
                await conn.execution_options(**{_IMMEDIATE: True})
                async with conn.begin():
                    if not self.is_sqlite:
                        await conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                        )
                    yield conn
                    if self.is_sqlite:
                        broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                        if broken:
                            raise SchemaError(f"the migration broke foreign keys: {broken[:5]}")
            finally:
                if self.is_sqlite:
                    await conn.run_sync(_sqlite_foreign_keys, True)

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

    async def write_sync(self, work: Callable[[Connection], T]) -> T:
        """Run ``work``, plain synchronous Core code, in one write transaction.

        For the hottest writes. Through aiosqlite every statement is a round trip to its
        thread and back (a fraction of a millisecond, more than the statement itself), so
        on SQLite the whole transaction runs in one trip to a thread of its own, on a
        connection of its own to the same file, queued with this process's other writers.
        On PostgreSQL it runs on the async engine (``run_sync``), as any other write.
        """
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        if self._sync_engine is None or self._sync_thread is None:
            url = self.engine.url.set(drivername="sqlite")
            self._sync_engine = create_engine(url, echo=self.engine.echo)
            _sqlite_events(self._sync_engine)
            self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writes")
        engine, thread = self._sync_engine, self._sync_thread

        def transaction() -> T:
            with engine.connect() as conn:
                conn = conn.execution_options(**{_IMMEDIATE: True})
                with conn.begin():
                    return work(conn)

        async with self._writer or nullcontext():
            return await asyncio.get_running_loop().run_in_executor(thread, transaction)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._sync_thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._sync_thread.shutdown)
            self._sync_thread = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None
