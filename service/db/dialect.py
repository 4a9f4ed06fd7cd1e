"""SQL that SQLite and PostgreSQL spell differently, written once.

Both backends have ``INSERT ... ON CONFLICT`` (and ``RETURNING``), but SQLAlchemy builds
it from each dialect's own ``insert``; these helpers pick it from whatever the statement
will run on (a `Database`, a session or connection, sync or async, or a dialect's name),
so the modules that store things never ask which database they run on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from sqlalchemy import Engine, FunctionElement, String, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert

__all__ = ["Bind", "dialect_name", "insert", "insert_or_ignore", "upsert", "utc_text"]


class _HasDialect(Protocol):
    @property
    def dialect(self) -> Dialect: ...


Bind = (
    str
    | Dialect
    | Engine
    | AsyncEngine
    | Connection
    | AsyncConnection
    | Session
    | AsyncSession
    | _HasDialect
)
"""What a statement will run on: anything that knows its dialect, or a dialect's name."""

# A dialect's own INSERT, which has on_conflict_do_nothing/on_conflict_do_update.
Upsertable = postgresql.Insert | sqlite.Insert


def dialect_name(bind: Bind) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    if isinstance(bind, str):
        return bind
    if isinstance(bind, Dialect):
        return bind.name
    if isinstance(bind, Session | AsyncSession):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def insert(bind: Bind, table: Any) -> Upsertable:
    """The backend's ``INSERT`` into ``table``, with its ``on_conflict_*`` methods."""
    if dialect_name(bind) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_or_ignore(bind: Bind, table: Any) -> Insert:
    """``INSERT`` that silently does nothing when a unique key already exists."""
    return insert(bind, table).on_conflict_do_nothing()


def upsert(
    bind: Bind,
    table: Any,
    *,
    key: Iterable[Any],
    set_: Callable[[Any], Mapping[Any, Any]],
) -> Insert:
    """``INSERT``, or on a conflict over the unique columns ``key``, ``UPDATE``.

    ``set_`` receives the row that was to be inserted (``excluded``) and returns the
    columns to update with their new values, e.g.
    ``lambda new: {"hits": RateCounter.hits + new.hits}``.
    """
    statement = insert(bind, table)
    return statement.on_conflict_do_update(
        index_elements=list(key), set_=dict(set_(statement.excluded))
    )


class utc_text(FunctionElement[str]):
    """A timestamp column as ISO 8601 text in UTC, ``2024-05-01T09:30:00Z``, on either
    backend (SQLite keeps UTC text already; PostgreSQL converts from ``timestamptz``)."""

    type = String()
    inherit_cache = True
    name = "utc_text"


@compiles(utc_text, "sqlite")
def _utc_text_sqlite(element: utc_text, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return compiler.process(func.strftime("%Y-%m-%dT%H:%M:%SZ", column), **kw)


@compiles(utc_text, "postgresql")
def _utc_text_postgresql(element: utc_text, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    text = func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    return compiler.process(text, **kw)
