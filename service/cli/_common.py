"""What the command modules share: running a job against the database.

A command module imports at its top only what building its parser needs (argparse, the
settings); the database, the app and the rest are imported by the command when it runs,
so ``newsletter --help`` and the commands that need no database start at once
(tests/test_cli_startup.py checks which modules ``--help`` loads).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from service.settings import Settings

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["run_with_db"]


def run_with_db(settings: Settings, job: Callable[[Database], Awaitable[int]]) -> int:
    """Run ``job`` once the schema is current (migrated first if migrate-on-start is on).

    An old schema is a message naming ``newsletter migrate`` and exit status 1.
    """
    import asyncio

    from service.db import Database, SchemaError

    async def runner() -> int:
        db = Database.from_url(settings.database_url)
        try:
            try:
                await db.prepare_schema(migrate=settings.migrates_on_start)
            except SchemaError as exc:
                print(f"newsletter: {exc}", file=sys.stderr)
                return 1
            return await job(db)
        finally:
            await db.dispose()

    return asyncio.run(runner())
