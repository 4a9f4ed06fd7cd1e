"""``newsletter backup PATH``: a consistent copy of the SQLite database, safe while serving.

SQLite's online backup copies the database as it was when the copy began (one read
transaction: in WAL mode writers go on meanwhile), including what is still in the ``-wal``
file, which copying the file would miss. The copy is checked, made a single self-contained
file (no WAL), synced, and renamed into place, so PATH is either the old file or a
complete new backup. PostgreSQL has its own tools; the command says which.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from service.settings import Settings

__all__ = ["register"]

BUSY_TIMEOUT_MS = 10_000

POSTGRES_ADVICE = """\
newsletter backup copies SQLite databases; this one is PostgreSQL. Use PostgreSQL's own
tools, which take a consistent snapshot while the service runs:

    pg_dump --format=custom --file=newsletter.dump "$DATABASE_URL"
    pg_restore --clean --if-exists --no-owner --dbname="$DATABASE_URL" newsletter.dump

(or continuous archiving / your provider's snapshots for point-in-time recovery)."""


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        print(POSTGRES_ADVICE, file=sys.stderr)
        return 2
    source = Path(str(url.database or "")).expanduser()
    if not url.database or url.database == ":memory:" or not source.is_file():
        print(f"newsletter backup: there is no database file at {source}", file=sys.stderr)
        return 1
    target = Path(args.path).expanduser()
    if target.is_dir():
        target = target / time.strftime(f"{source.stem}-%Y%m%dT%H%M%SZ.db", time.gmtime())
    if target.exists() and not args.force:
        print(f"newsletter backup: {target} exists (--force replaces it)", file=sys.stderr)
        return 1
    if target.resolve() == source.resolve():
        print("newsletter backup: the backup cannot replace the database", file=sys.stderr)
        return 1
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        pages = _copy(source, partial)
        os.replace(partial, target)
        _sync_folder(target.parent)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        print(f"newsletter backup: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {source} to {target} ({pages} pages, {target.stat().st_size} bytes)")
    return 0


def _copy(source: Path, target: Path) -> int:
    with (
        contextlib.closing(sqlite3.connect(source, timeout=BUSY_TIMEOUT_MS / 1000)) as src,
        contextlib.closing(sqlite3.connect(target, isolation_level=None)) as dst,
    ):
        src.backup(dst)  # all pages in one step: the database as it was when it began
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        problem = dst.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise sqlite3.DatabaseError(f"the copy failed its check: {problem}")
        pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
    with target.open("rb+") as written:
        os.fsync(written.fileno())
    return pages


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def register(commands: Any) -> None:
    backup = commands.add_parser(
        "backup",
        help="copy the SQLite database to a file, safely while the service runs",
        description="Copy the SQLite database (NEWSLETTER_DATABASE_URL) to PATH with "
        "SQLite's online backup: a consistent copy as of the moment it starts, taken while "
        "the service keeps serving. PATH may be a folder (a dated file is made in it). For "
        "PostgreSQL it says what to use instead (pg_dump).",
    )
    backup.add_argument("path", metavar="PATH", help="the backup file, or a folder for it")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.set_defaults(handler=_backup)
