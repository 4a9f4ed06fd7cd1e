"""The db package: what the rest of the service imports, and SQL written once for both
backends."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

import service.db
from service import limits
from service.db import Database, Write, Writes, insert_or_ignore, run, upsert, utc_text
from service.models import Meta, RateCounter
from service.settings import Rate


def test_the_public_names_are_pinned() -> None:
    assert sorted(service.db.__all__) == [
        "Database",
        "Migrated",
        "SchemaError",
        "SchemaStatus",
        "Unavailable",
        "Write",
        "Writes",
        "dialect_name",
        "insert",
        "insert_or_ignore",
        "make_engine",
        "run",
        "run_sync",
        "upsert",
        "utc_text",
    ]


def _meta(db: Database, value: str) -> Writes[str | None]:
    yield Write(insert_or_ignore(db, Meta).values(key="k", value=value))
    # Or built when the batch runs, for the backend it runs on.
    yield Write(lambda dialect: insert_or_ignore(dialect, Meta).values(key="k", value="x"))
    found = yield Write(select(Meta.value).where(Meta.key == "k"))
    return found.scalar()


async def test_a_batch_runs_its_statements_in_order_in_one_transaction(db_url: str) -> None:
    db = Database.from_url(db_url)
    try:
        assert await db.write_batch(lambda: _meta(db, "first")) == "first"
        now = datetime.now(UTC)
        rates = (Rate(2, 60),)
        waits = [await db.write_batch(lambda: limits.add_one("a", rates, now)) for _ in range(3)]
        assert waits[:2] == [None, None]
        assert waits[2] is not None and 0 < waits[2] <= 61
        async with db.read() as session:
            assert await run(session, limits.count("a", rates[0], now)) == 3
    finally:
        await db.dispose()


async def test_upsert_and_utc_text_read_alike_on_both_backends(db_url: str) -> None:
    db = Database.from_url(db_url)
    when = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    row = {"key": "c", "window_start": 0, "hits": 2, "expires_at": when}
    try:
        async with db.write() as session:
            for _ in range(2):
                await session.execute(
                    upsert(
                        session,
                        RateCounter,
                        key=[RateCounter.key, RateCounter.window_start],
                        set_=lambda new: {"hits": RateCounter.hits + new.hits},
                    ).values(**row)
                )
        async with db.read() as session:
            found = (
                await session.execute(
                    select(RateCounter.hits, utc_text(RateCounter.expires_at)).where(
                        RateCounter.key == "c"
                    )
                )
            ).one()
        assert tuple(found) == (4, "2024-05-01T09:30:00Z")
    finally:
        await db.dispose()
