"""The public endpoints keep a list for a moment; the admin side's changes show at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import event
from support import SUBSCRIBE, SMTPServer, make_list, serve_app

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.db import Database
from service.lists import ListCache, update_list
from service.settings import Settings


async def test_lists_are_cached_briefly_and_admin_changes_apply_at_once(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings.replace(list_cache_ttl=60.0)) as app:
        first = await app.client.post(SUBSCRIBE, json={"email": "a@example.com"})
        assert first.status_code == 202

        # Changed behind the server's back (another process): not seen within the TTL.
        await update_list(app.db, "daily", {"consentCheckbox": "true"})
        stale = await app.client.post(SUBSCRIBE, json={"email": "b@example.com"})
        assert stale.status_code == 202

        # Changed through this server's admin API: seen by the very next signup.
        await create_user(app.db, "alice", "correct horse battery staple")
        token = await create_token(app.db, "alice", "tests")
        changed = await app.client.patch(
            "/api/v1/admin/lists/daily",
            json={"consentCheckbox": True},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert changed.status_code == 200, changed.text
        fresh = await app.client.post(SUBSCRIBE, json={"email": "c@example.com"})
        assert fresh.status_code == 422 and "consent" in fresh.json()["fields"]


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """The database of a list "daily", opened as the server would."""
    await make_list(settings)
    database = Database.from_url(settings.database_url)
    yield database
    await database.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def counting_list_reads(db: Database) -> Iterator[list[str]]:
    """The SELECTs on the lists table, as the database received them."""
    reads: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and " lists" in statement:
            reads.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield reads
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)


async def test_concurrent_requests_for_an_expired_list_read_it_once(db: Database) -> None:
    clock = Clock()
    cache = ListCache(db, ttl=2.0, clock=clock)
    with counting_list_reads(db) as reads:
        first = await asyncio.gather(*(cache.get("daily") for _ in range(50)))
        assert all(found is not None and found.slug == "daily" for found in first)
        assert len(reads) == 1  # not one per request

        clock.now += 1.0  # fresh: no read at all
        await asyncio.gather(*(cache.get("daily") for _ in range(50)))
        assert len(reads) == 1

        clock.now += 10.0  # long expired: everyone waits for the one new read
        await asyncio.gather(*(cache.get("daily") for _ in range(50)))
        assert len(reads) == 2


async def test_a_just_expired_list_is_answered_at_once_and_renewed_behind(db: Database) -> None:
    clock = Clock()
    cache = ListCache(db, ttl=2.0, clock=clock)
    before = await cache.get("daily")
    assert before is not None and before.name == "Frühstücks-Briefing"
    await update_list(db, "daily", {"name": "Abendblatt"})  # another process's change

    clock.now += 2.5  # expired less than a ttl ago
    with counting_list_reads(db) as reads:
        answers = await asyncio.gather(*(cache.get("daily") for _ in range(20)))
        # Answered from the entry, with one read started for all of them.
        assert {found.name for found in answers if found} == {"Frühstücks-Briefing"}
        for _ in range(1000):  # up to 10 s on a busy machine; usually one round
            renewed = await cache.get("daily")
            if renewed is not None and renewed.name == "Abendblatt":
                break
            await asyncio.sleep(0.01)
        assert renewed is not None and renewed.name == "Abendblatt"
        assert len(reads) == 1


async def test_a_read_under_way_when_the_cache_is_cleared_is_not_kept(db: Database) -> None:
    cache = ListCache(db, ttl=60.0)

    def cleared_meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if " lists" in statement:  # the list was read as it was before a change...
            cache.clear()  # ...which the admin side then made and cleared the cache for

    event.listen(db.engine.sync_engine, "after_cursor_execute", cleared_meanwhile)
    await cache.get("daily")
    event.remove(db.engine.sync_engine, "after_cursor_execute", cleared_meanwhile)
    with counting_list_reads(db) as reads:
        await cache.get("daily")
        assert len(reads) == 1  # what the earlier read found was not kept


async def test_a_list_created_elsewhere_is_found_within_a_fraction_of_a_second(
    db: Database,
) -> None:
    from service.lists import MISS_TTL, create_list

    clock = Clock()
    cache = ListCache(db, ttl=2.0, clock=clock)
    assert await cache.get("evening") is None
    await create_list(db, slug="evening", name="Evening", origins=[])  # another process
    clock.now += MISS_TTL  # a miss is not kept for a whole ttl, nor answered stale
    found = await cache.get("evening")
    assert found is not None and found.name == "Evening"
