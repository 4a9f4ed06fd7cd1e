"""What the command modules share: running a job against the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service.db import Database
from service.settings import Settings

__all__ = ["run_with_db"]


def run_with_db(settings: Settings, job: Callable[[Database], Awaitable[int]]) -> int:
    async def runner() -> int:
        db = Database.from_url(settings.database_url)
        try:
            await db.create_schema()
            return await job(db)
        finally:
            await db.dispose()

    return asyncio.run(runner())
