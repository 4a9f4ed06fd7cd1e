"""Writes described as data, so that the db package decides how they reach the database.

A batch is a generator that yields the statements to run, each a `Write`, and receives
each one's result before it builds the next; what it returns is the batch's result::

    def store(rows) -> Writes[int]:
        counted = yield Write(upsert_counters, rows)
        ...
        yield Write(insert(SignupRequest), allowed)
        return len(allowed)

It never touches a connection: `Database.write_batch` runs it in one transaction, on
SQLite in one go on the event loop (see `sqlite.BatchWriter`), on PostgreSQL on the
async engine; `run` runs one inside a session's transaction. A statement that SQLite and
PostgreSQL spell differently is given as a function of the dialect's name (built when the
batch runs, e.g. with `service.db.dialect.upsert`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from sqlalchemy.engine import Connection, Result
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

__all__ = ["Write", "Writes", "run", "run_sync"]

T = TypeVar("T")


@dataclass(frozen=True)
class Write:
    """One statement of a batch, with its parameters (a list of rows: executemany)."""

    statement: Executable | Callable[[str], Executable]  # or built from the dialect's name
    params: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None

    def build(self, dialect: str) -> Executable:
        if isinstance(self.statement, Executable):
            return self.statement
        return self.statement(dialect)


Writes: TypeAlias = Generator[Write, Result[Any], T]
"""A batch of statements that returns a ``T``; see the module's docstring."""


def run_sync(conn: Connection | Session, writes: Writes[T]) -> T:
    """Run ``writes`` on a synchronous connection, in the caller's transaction."""
    if isinstance(conn, Session):
        conn = conn.connection()  # Core: the ORM's bulk-insert handling is not wanted
    dialect = conn.dialect.name
    try:
        step = next(writes)
        while True:
            step = writes.send(conn.execute(step.build(dialect), step.params))
    except StopIteration as done:
        result: T = done.value
        return result


async def run(conn: AsyncConnection | AsyncSession, writes: Writes[T]) -> T:
    """Run ``writes`` on an async connection or session, in the caller's transaction."""
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    dialect = conn.dialect.name
    try:
        step = next(writes)
        while True:
            step = writes.send(await conn.execute(step.build(dialect), step.params))
    except StopIteration as done:
        result: T = done.value
        return result
