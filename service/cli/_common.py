"""What the command modules share: running a job against the database."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from service.db import Database, SchemaError
from service.settings import Settings

__all__ = ["run_with_db"]


def run_with_db(settings: Settings, job: Callable[[Database], Awaitable[int]]) -> int:
    """Run ``job`` once the schema is current (migrated first if migrate-on-start is on).

    An old schema is a message naming ``newsletter migrate`` and exit status 1.
    """

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
