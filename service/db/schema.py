"""The schema is made and changed by Alembic migrations only (``service/migrations/``).

These functions take a synchronous SQLAlchemy ``Connection`` (``Database`` calls them
through ``AsyncConnection.run_sync``), so the service's own engine runs the migrations on
SQLite (aiosqlite) and PostgreSQL (asyncpg) alike; ``migrations/env.py`` picks the
connection up from ``Config.attributes``. No ``alembic.ini`` is needed at run time.

A database made before migrations existed (our tables, no ``alembic_version`` table) is
adopted by ``upgrade`` when its tables and columns are exactly those of the first
revision: it is stamped with that revision and upgraded from there. Anything else that
is not a migrated database is refused with a message, never guessed at.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection

from service.models import Base

__all__ = [
    "BASELINE",
    "Migrated",
    "SchemaError",
    "SchemaStatus",
    "alembic_config",
    "downgrade",
    "head",
    "status",
    "upgrade",
]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
BASELINE = "0001"  # the first revision: the schema the service had before migrations
VERSION_TABLE = "alembic_version"

# Alembic tells at INFO level which context it uses, at every start; we log what was done.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


class SchemaError(Exception):
    """The database's schema is not one this version can use; the message says what to do."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands. ``current`` is None for a database never migrated."""

    current: str | None
    head: str
    legacy: bool = False  # our tables are there, but no migration history
    newer: bool = False  # at a revision this version does not know: a newer one migrated it

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    @property
    def usable(self) -> bool:
        """This version can run on it: current, or migrated ahead by a newer version.

        Migrations keep the previous version working (add first, remove a release later),
        so old processes keep serving during a rolling deploy and after a rollback.
        """
        return self.is_current or self.newer

    def describe(self) -> str:
        if self.is_current:
            return f"the schema is current (revision {self.head})"
        if self.newer:
            return (
                f"the schema is at revision {self.current}, newer than this version's "
                f"{self.head} (a newer version migrated it)"
            )
        if self.legacy:
            return "the database was made before migrations existed (no migration history)"
        if self.current is None:
            return f"the database has no schema yet (newest revision {self.head})"
        return f"the schema is at revision {self.current}, this version needs {self.head}"


@dataclass(frozen=True)
class Migrated:
    """What ``upgrade`` did."""

    before: str | None
    after: str
    adopted: bool = False

    @property
    def changed(self) -> bool:
        return self.adopted or self.before != self.after


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code; ``connection`` is what env.py migrates."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The newest revision this version of the service ships."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"the migrations have {len(heads)} heads ({heads}); merge them")
    return heads[0]


def status(conn: Connection) -> SchemaStatus:
    current = MigrationContext.configure(conn).get_current_revision()
    legacy = False
    if current is None:
        ours = set(Base.metadata.tables)
        legacy = bool(ours & set(inspect(conn).get_table_names()))
    newer = current is not None and current not in _known_revisions()
    return SchemaStatus(current, head(), legacy, newer)


def upgrade(conn: Connection, revision: str = "head") -> Migrated:
    """Upgrade to ``revision``, adopting a database made before migrations (see above).

    Runs in the caller's transaction, which commits or rolls back all of it.
    """
    before = status(conn)
    if before.newer:
        raise SchemaError(f"{before.describe()}; this version cannot migrate it")
    if before.legacy:
        _adopt(conn)
    command.upgrade(alembic_config(conn), revision)
    after = status(conn).current
    assert after is not None
    return Migrated(before.current, after, adopted=before.legacy)


def downgrade(conn: Connection, revision: str) -> None:
    """Undo migrations down to ``revision`` (``"base"``: drop everything). For development."""
    command.downgrade(alembic_config(conn), revision)


@functools.cache
def _known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def _adopt(conn: Connection) -> None:
    """Stamp a pre-migration database with the first revision, if it is that schema."""
    expected = _baseline_shape()
    found = _shape(conn)
    problems = [f"table {name} is missing" for name in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected table {name}" for name in sorted(found.keys() - expected.keys())]
    for name in sorted(expected.keys() & found.keys()):
        if missing := sorted(expected[name] - found[name]):
            problems.append(f"table {name} lacks columns {', '.join(missing)}")
        if extra := sorted(found[name] - expected[name]):
            problems.append(f"table {name} has unexpected columns {', '.join(extra)}")
    if problems:
        raise SchemaError(
            "the database has tables but no migration history, and they are not the schema "
            f"this service made before migrations ({'; '.join(problems)}). Use an empty "
            "database, or bring this one to that schema and run `newsletter migrate` again."
        )
    command.stamp(alembic_config(conn), BASELINE)


def _shape(conn: Connection) -> dict[str, set[str]]:
    inspector = inspect(conn)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if table != VERSION_TABLE
    }


@functools.cache
def _baseline_shape() -> dict[str, set[str]]:
    """Tables and columns of the first revision, from running it on an in-memory SQLite."""
    engine = create_engine("sqlite://")
    try:
        with engine.begin() as scratch:
            command.upgrade(alembic_config(scratch), BASELINE)
            return _shape(scratch)
    finally:
        engine.dispose()
