"""When the database cannot take a write for a reason that is not the request's.

A read-only file, a full disk, a failing disk, a server that is down or read-only (a
standby), a lock held past the busy timeout: each makes a write fail whatever is written.
`reason` names the fault from the driver's error; the engines then treat the error as a
disconnect (see `on_error`), so the connection that met it, and every other one the pool
holds, is reopened before its next use: a SQLite connection opened while its file was
read-only stays read-only until it is reopened, so without this the service would not
heal when the file becomes writable again. `Database` turns such errors into
`Unavailable`, a 503 refusal with Retry-After, which ``/readyz`` reports too.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError

from service.errors import Refusal

__all__ = ["REASONS", "Unavailable", "on_error", "reason"]

# What each fault is called in logs, /readyz and /metrics, what the caller is told, and how
# long to wait before trying again (seconds).
REASONS: dict[str, tuple[str, float]] = {
    "read-only": ("the database is read-only", 30.0),
    "disk-full": ("the disk holding the database is full", 30.0),
    "io-error": ("the disk holding the database failed a write", 30.0),
    "unreachable": ("the database cannot be reached", 5.0),
    "busy": ("the database is busy", 2.0),
}

_SQLITE = {
    sqlite3.SQLITE_READONLY: "read-only",
    sqlite3.SQLITE_PERM: "read-only",
    sqlite3.SQLITE_FULL: "disk-full",
    sqlite3.SQLITE_IOERR: "io-error",
    sqlite3.SQLITE_CANTOPEN: "unreachable",
    sqlite3.SQLITE_BUSY: "busy",
    sqlite3.SQLITE_LOCKED: "busy",
}

# PostgreSQL SQLSTATEs, by full code, then by class (their first two characters).
_POSTGRES = {
    "25006": "read-only",  # read_only_sql_transaction: a standby, or read-only by setting
    "53100": "disk-full",
    "58030": "io-error",
    "57P01": "unreachable",  # admin_shutdown
    "57P02": "unreachable",  # crash_shutdown
    "57P03": "unreachable",  # cannot_connect_now: starting up or in recovery
    "08": "unreachable",  # connection exceptions
    "53": "busy",  # insufficient resources: out of memory, too many connections
}


class Unavailable(Refusal):
    """The database cannot store anything right now (``reason``: a key of `REASONS`)."""

    status = 503
    code = "unavailable"

    def __init__(self, reason: str) -> None:
        what, wait = REASONS[reason]
        super().__init__(
            f"We cannot store anything right now: {what}. Nothing was changed; please try "
            "again in a little while.",
            retry_after=wait,
        )
        self.reason = reason


def reason(exc: BaseException) -> str | None:
    """The fault behind a driver error, or None if it is about the request itself."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            # Invalidated by on_error (reclassify) or by the dialect (a lost connection).
            return _driver_reason(exc.orig) or "unreachable"
        return _driver_reason(exc.orig)
    return _driver_reason(exc)


def _driver_reason(error: Any) -> str | None:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE.get(code & 0xFF)  # extended codes: SQLITE_READONLY_DBMOVED and so on
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str):
        return _POSTGRES.get(state) or _POSTGRES.get(state[:2])
    if isinstance(error, OSError):  # asyncpg's connect: refused, unknown host, timed out
        return "unreachable"
    return None


def on_error(context: ExceptionContext) -> None:
    """An engine's ``handle_error`` hook: a fault of the file or server (not ``busy``,
    which passes) reopens the pool's connections."""
    found = _driver_reason(context.original_exception)
    if found is not None and found != "busy":
        context.is_disconnect = True
