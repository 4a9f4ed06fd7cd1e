"""``newsletter migrate``: bring the database schema up to date."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.settings import Settings

__all__ = ["register"]


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from service.db import Database, SchemaError
    from service.db.sqlite import missing_file

    where = make_url(settings.database_url).render_as_string(hide_password=True)

    if args.check and missing_file(settings.database_url):
        print(f"{where}: there is no database file yet")
        return 1

    async def run() -> int:
        db = Database.from_url(settings.database_url)
        try:
            if args.check:
                status = await db.schema_status()
                print(f"{where}: {status.describe()}")
                return 0 if status.is_current else 1
            done = await db.migrate()
        except SchemaError as exc:
            print(f"newsletter: {where}: {exc}", file=sys.stderr)
            return 1
        except (OSError, SQLAlchemyError) as exc:
            print(f"newsletter: {where}: cannot reach the database: {exc}", file=sys.stderr)
            return 1
        finally:
            await db.dispose()
        if done.adopted:
            print(f"{where}: adopted a database made before migrations")
        if done.before == done.after:
            print(f"{where}: the schema is current (revision {done.after}); nothing to do")
        else:
            print(f"{where}: migrated from {done.before or '(empty)'} to revision {done.after}")
        return 0

    return asyncio.run(run())


def register(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Bring the database schema (NEWSLETTER_DATABASE_URL) up to this version, "
        "in one transaction. Safe to run again, and from several places at once. Run it "
        "before starting a new version's processes.",
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if the schema is not current (for deploy scripts)",
    )
    migrate.set_defaults(handler=_migrate)
