"""Engines per backend, and the kinds of transaction the service uses.

SQLite's connection settings and its fast path for batched writes are in
``service.db.sqlite``.

The schema comes from the Alembic migrations only (``service.db.schema``). ``migrate``
holds an exclusive lock while it runs (SQLite's write lock; a PostgreSQL advisory lock),
so processes that start together migrate one after the other, the later ones finding
nothing left to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Dialect, Row, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.db import faults, schema, signals, sqlite  # submodules, not the package namespace
from service.db.batch import Write, Writes, run, run_sync
from service.db.faults import Unavailable
from service.db.schema import BASELINE, Migrated, SchemaError, SchemaStatus

__all__ = ["Database", "Migrated", "SchemaError", "SchemaStatus", "make_engine"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The same SQL on both backends; the row says when the last check passed.
_WRITE_CHECK = text(
    "INSERT INTO meta (key, value) VALUES ('write_check', :at) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_PG_MIGRATION_LOCK = 7_236_828_016_311_201_363  # any fixed bigint; pg_advisory_xact_lock key


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        parsed, sync = sqlite.synchronous(parsed)
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, echo=echo)
        sqlite.configure(engine.sync_engine, sync=sync)
        return engine
    engine = create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)
    event.listen(engine.sync_engine, "handle_error", faults.on_error)
    return engine


class Database:
    """The engine plus session factories; one per app, owned by the lifespan."""

    def __init__(self, engine: AsyncEngine, *, sqlite_sync: str = sqlite.SYNCHRONOUS[0]) -> None:
        self.engine = engine
        self._sqlite_sync = sqlite_sync  # for the batch writer's connections
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.dialect: Dialect = engine.dialect
        self._sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time. This process's writers queue here, in order,
        # rather than in SQLite's busy handler, which sleeps between retries (up to 100 ms
        # each) and under load turns a millisecond's wait into seconds. Other processes
        # on the same file still meet the busy timeout.
        self._writer = asyncio.Lock() if self._sqlite else None
        # Write transactions begin with BEGIN IMMEDIATE on SQLite (see service.db.sqlite).
        self._write_options: dict[str, Any] = {sqlite.IMMEDIATE: True} if self._sqlite else {}
        self._batches: sqlite.BatchWriter | None = None  # see write_batch; made on first use
        self._signal_file = signals.signal_file(engine.url) if self._sqlite else None

    @classmethod
    def from_url(cls, url: str) -> Database:
        sync = sqlite.synchronous(url)[1] if make_url(url).get_backend_name() == "sqlite" else ""
        return cls(make_engine(url), sqlite_sync=sync or sqlite.SYNCHRONOUS[0])

    def per_backend(self, *, sqlite: T, postgresql: T) -> T:
        """The one of two ways of doing something that suits this database.

        For the few things that must be done differently, not just spelled differently
        (for SQL, see `service.db.dialect`): e.g. how the worker delivers mail, since a
        SQLite write transaction may not stay open while a message is sent.
        """
        return sqlite if self._sqlite else postgresql

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
            if self._sqlite:
                await conn.run_sync(sqlite.set_foreign_keys, False)
            try:
                await conn.execution_options(**self._write_options)
                async with conn.begin():
                    if not self._sqlite:
                        await conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                        )
                    yield conn
                    if self._sqlite:
                        broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                        if broken:
                            raise SchemaError(f"the migration broke foreign keys: {broken[:5]}")
            finally:
                if self._sqlite:
                    await conn.run_sync(sqlite.set_foreign_keys, True)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading; nothing it does is committed.

        A database that cannot be reached raises `Unavailable` (a 503), as in `write`.
        """
        async with self.sessions() as session, self._faults():
            await self._connect(session)
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises.

        A write the database cannot take whatever it is (read-only, disk full, down: see
        `service.db.faults`) raises `Unavailable`, a 503 refusal with Retry-After.
        """
        async with (
            self._writer or nullcontext(),
            self.sessions() as session,
            self._faults(),  # around the commit too
            session.begin(),
        ):
            await self._connect(session, self._write_options)
            yield session

    async def check_writes(self) -> None:
        """Raise `Unavailable` unless the database takes a write now: one row of the
        ``meta`` table, rewritten and committed, which finds a read-only file or server, a
        full disk (where the write needs room) and a lock held too long; for readiness.

        A read-only answer is tried twice: it reopens the pool, and a connection opened
        while the fault lasted (a read-only session on a standby) fails once more after it
        is gone.
        """
        for attempt in range(2):
            try:
                async with self.write() as session:
                    await session.execute(_WRITE_CHECK, {"at": datetime.now(UTC).isoformat()})
                return
            except Unavailable as exc:
                if attempt or exc.reason != "read-only":
                    raise

    @asynccontextmanager
    async def _faults(self) -> AsyncIterator[None]:
        try:
            yield
        except DBAPIError as exc:
            found = faults.reason(exc)
            if found is None:
                raise
            log.warning("database fault (%s): %s", found, exc.orig)
            raise Unavailable(found) from exc

    @staticmethod
    async def _connect(session: AsyncSession, options: dict[str, Any] | None = None) -> None:
        """Check the session's connection out now, so a database that is down is told
        apart from an error of the block's own (asyncpg raises a bare OSError)."""
        try:
            await session.connection(execution_options=options or None)
        except OSError as exc:
            log.warning("database fault (unreachable): %s", exc)
            raise Unavailable("unreachable") from exc

    async def write_batch(self, batch: Callable[[], Writes[T]], *, announce: bool = False) -> T:
        """Run the statements ``batch()`` yields (see `service.db.batch`) in one write
        transaction, and return what it returns.

        For the hottest writes: on SQLite the whole batch runs in one go, without
        aiosqlite's trip to its thread and back for every statement (see
        `sqlite.BatchWriter`); on PostgreSQL it runs on the async engine, as any other
        write. ``announce``: it stored work for a worker, so tell the workers of other
        processes once it is committed (`listen_for_work`).
        """
        async with self._faults():
            if not self._sqlite:
                try:
                    async with self.engine.begin() as conn:
                        result = await run(conn, batch())
                        if announce:
                            await conn.execute(signals.notify_statement())
                        return result
                except OSError as exc:  # only SQL runs here: this is asyncpg's
                    raise Unavailable("unreachable") from exc
            if self._batches is None:
                self._batches = sqlite.BatchWriter(
                    self.engine.url, echo=bool(self.engine.echo), sync=self._sqlite_sync
                )
            async with self._writer or nullcontext():
                result = await self._batches.run(lambda conn: run_sync(conn, batch()))
        if announce and self._signal_file is not None:
            signals.touch(self._signal_file)
        return result

    async def write_one(self, write: Write) -> list[Row[Any]]:
        """Run one statement as a transaction of its own, in one trip: on PostgreSQL in
        autocommit mode (no BEGIN and COMMIT round trips: one statement is atomic by
        itself), on SQLite as a batch (`write_batch`). Returns its rows, if any."""
        if not self._sqlite:
            async with self._faults():
                try:
                    async with self.engine.connect() as conn:
                        await conn.execution_options(isolation_level="AUTOCOMMIT")
                        result = await conn.execute(write.build(self.dialect.name), write.params)
                        return list(result.all()) if result.returns_rows else []
                except OSError as exc:
                    raise Unavailable("unreachable") from exc

        def one() -> Writes[list[Row[Any]]]:
            result = yield write
            return list(result.all()) if result.returns_rows else []  # type: ignore[attr-defined]

        return await self.write_batch(one)

    def listen_for_work(self, heard: Callable[[], None]) -> AbstractAsyncContextManager[None]:
        """While the block runs, call ``heard`` as soon as another process announces work
        (`write_batch` with ``announce``): ``LISTEN`` on PostgreSQL, a signal file's
        modification time on SQLite (see `service.db.signals`)."""
        return signals.listen(self.engine, self._signal_file, heard)

    async def dispose(self) -> None:
        try:
            await self.engine.dispose()
        finally:
            if self._batches is not None:
                await self._batches.close()
                self._batches = None
