"""Migrations: they agree with the models, and the service and CLI use them as documented."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import POSTGRES
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from starlette.applications import Starlette
from support import CLIResult, fresh_postgres_database, make_list, migrate, run_cli, serve_app

from service.db import Database, SchemaStatus
from service.db.schema import BASELINE, head
from service.models import Base
from service.settings import Settings
from service.web import health


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with nothing in it (``db_url`` comes migrated)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    if not POSTGRES:
        pytest.skip("PostgreSQL: set NEWSLETTER_TEST_POSTGRES_URL to run these too")
    async with fresh_postgres_database(POSTGRES) as url:
        yield url


async def on(url: str, job: Any) -> Any:
    """Run ``job(sync_connection)`` on the database at ``url`` and commit."""
    db = Database.from_url(url)
    try:
        async with db.engine.begin() as conn:
            return await conn.run_sync(job)
    finally:
        await db.dispose()


async def status_of(url: str) -> SchemaStatus:
    db = Database.from_url(url)
    try:
        return await db.schema_status()
    finally:
        await db.dispose()


def differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def shape(conn: Connection) -> dict[str, Any]:
    """Everything reflection sees of our tables: columns, keys, indexes, checks."""
    found = inspect(conn)
    columns = found.get_columns
    tables: dict[str, Any] = {}
    for name in sorted(set(found.get_table_names()) - {"alembic_version"}):
        tables[name] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in columns(name)],
            "primary key": found.get_pk_constraint(name),
            "foreign keys": sorted(map(repr, found.get_foreign_keys(name))),
            "unique": sorted(map(repr, found.get_unique_constraints(name))),
            "indexes": sorted(map(repr, found.get_indexes(name))),
            "checks": sorted(map(repr, found.get_check_constraints(name))),
        }
    return tables


def settings_for(url: str, **env: str) -> Settings:
    return Settings.from_env(
        {
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_SECRET_KEY": "k" * 40,
            "NEWSLETTER_RUN_WORKER": "false",
            **env,
        }
    )


def cli(args: list[str], url: str, **env: str) -> CLIResult:
    return run_cli(args, {"NEWSLETTER_DATABASE_URL": url, **env})


# --- the models and the migrations agree ------------------------------------------------


async def test_migrated_database_matches_the_models(db_url: str) -> None:
    assert (await status_of(db_url)).is_current
    assert await on(db_url, differences) == []


async def test_migrations_make_what_the_models_would_make(db_url: str) -> None:
    """Column types, keys, indexes and check constraints, as reflection sees them."""
    migrated = await on(db_url, shape)
    db = Database.from_url(db_url)
    try:
        await db.downgrade("base")
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
            await conn.run_sync(Base.metadata.create_all)
    finally:
        await db.dispose()
    assert migrated == await on(db_url, shape)


async def test_downgrade_to_nothing_and_up_again(db_url: str) -> None:
    db = Database.from_url(db_url)
    try:
        await db.downgrade("base")
        assert await on(db_url, lambda c: set(inspect(c).get_table_names())) <= {"alembic_version"}
        assert (await db.schema_status()).current is None
        done = await db.migrate()
        assert (done.before, done.after) == (None, head())
    finally:
        await db.dispose()
    assert await on(db_url, differences) == []


async def test_migrate_twice_changes_nothing(db_url: str) -> None:
    await make_list(settings_for(db_url))
    db = Database.from_url(db_url)
    try:
        done = await db.migrate()
    finally:
        await db.dispose()
    assert (done.before, done.after, done.changed) == (head(), head(), False)
    rows = await on(db_url, lambda c: c.execute(text("SELECT slug FROM lists")).all())
    assert [tuple(r) for r in rows] == [("daily",)]


async def test_processes_migrating_at_once_take_turns(empty_url: str) -> None:
    first, second = Database.from_url(empty_url), Database.from_url(empty_url)
    try:
        results = await asyncio.gather(first.migrate(), second.migrate())
    finally:
        await first.dispose()
        await second.dispose()
    assert sorted((r.before or "", r.after) for r in results) == [("", head()), (head(), head())]


async def test_sqlite_foreign_keys_are_back_on_after_migrating(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'fk.db'}")
    try:
        await db.migrate()
        async with db.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await db.dispose()


# --- databases made before migrations ----------------------------------------------------


async def make_premigration_database(url: str) -> None:
    """What the service's create_all made before it had migrations: the first revision."""
    db = Database.from_url(url)
    try:
        await db.migrate(BASELINE)
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
    finally:
        await db.dispose()


async def test_a_database_made_before_migrations_is_adopted(empty_url: str) -> None:
    await make_premigration_database(empty_url)
    await on(
        empty_url,
        lambda c: c.execute(
            text(
                "INSERT INTO lists (slug, name, language, allowed_origins, double_opt_in, "
                "consent_text, widget, created_at) VALUES ('old', 'Old', 'en', '[]', true, '', "
                "'{}', '2024-01-01 00:00:00+00:00')"
            )
        ),
    )
    before = await status_of(empty_url)
    assert before.legacy and not before.is_current
    assert "before migrations" in before.describe()
    result = cli(["migrate"], empty_url)
    assert result.returncode == 0, result.stderr
    assert "adopted a database made before migrations" in result.stdout
    assert (await status_of(empty_url)).current == head()
    rows = await on(empty_url, lambda c: c.execute(text("SELECT slug FROM lists")).all())
    assert [tuple(r) for r in rows] == [("old",)]
    assert await on(empty_url, differences) == []


async def test_a_strange_database_without_history_is_refused_untouched(empty_url: str) -> None:
    await make_premigration_database(empty_url)
    await on(empty_url, lambda c: c.execute(text("CREATE TABLE extra (id INTEGER PRIMARY KEY)")))
    await on(empty_url, lambda c: c.execute(text("DROP TABLE login_attempts")))
    result = cli(["migrate"], empty_url)
    assert result.returncode == 1
    assert "unexpected table extra" in result.stderr
    assert "table login_attempts is missing" in result.stderr
    assert "Traceback" not in result.stderr
    tables = await on(empty_url, lambda c: set(inspect(c).get_table_names()))
    assert "alembic_version" not in tables and "extra" in tables


# --- the server and the CLI --------------------------------------------------------------


def test_migrate_on_start_defaults_to_on_for_sqlite_only() -> None:
    assert settings_for("sqlite:///x.db").migrates_on_start is True
    assert settings_for("postgresql://u@h/d").migrates_on_start is False
    assert settings_for("postgresql://u@h/d", NEWSLETTER_MIGRATE_ON_START="true").migrates_on_start
    off = settings_for("sqlite:///x.db", NEWSLETTER_MIGRATE_ON_START="off")
    assert off.migrates_on_start is False
    with pytest.raises(ValueError, match="expected auto, true or false"):
        settings_for("sqlite:///x.db", NEWSLETTER_MIGRATE_ON_START="sometimes")


async def test_the_server_refuses_an_unmigrated_database(
    empty_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(empty_url, NEWSLETTER_MIGRATE_ON_START="false")
    with caplog.at_level(logging.ERROR, "service"), pytest.raises(RuntimeError):
        async with serve_app(settings):
            pass  # pragma: no cover - it must not start
    assert "Run `newsletter migrate` first" in caplog.text
    assert "has no schema yet" in caplog.text
    assert (await status_of(empty_url)).current is None


async def test_the_server_migrates_on_start_when_asked(empty_url: str) -> None:
    settings = settings_for(empty_url, NEWSLETTER_MIGRATE_ON_START="true")
    async with serve_app(settings) as running:
        ready = await running.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "schema": "current"}
    assert (await status_of(empty_url)).is_current


def test_serve_stops_with_a_message_on_an_old_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    result = cli(["serve", "--port", "1"], url, NEWSLETTER_MIGRATE_ON_START="false")
    assert result.returncode == 1
    assert "has no schema yet" in result.stderr
    assert "Run `newsletter migrate` first" in result.stderr
    assert "Traceback" not in result.stderr
    listing = cli(["lists", "list"], url, NEWSLETTER_MIGRATE_ON_START="false")
    assert listing.returncode == 1 and "newsletter migrate" in listing.stderr


async def test_newsletter_migrate_creates_then_has_nothing_to_do(empty_url: str) -> None:
    check = cli(["migrate", "--check"], empty_url)
    assert check.returncode == 1
    first = cli(["migrate"], empty_url)
    assert first.returncode == 0, first.stderr
    assert f"migrated from (empty) to revision {head()}" in first.stdout
    again = cli(["migrate"], empty_url)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    check = cli(["migrate", "--check"], empty_url)
    assert check.returncode == 0 and "the schema is current" in check.stdout
    password = make_url(empty_url).password
    assert not password or password not in first.stdout + first.stderr


async def test_a_schema_from_a_newer_version_is_used_not_migrated(db_url: str) -> None:
    await on(db_url, lambda c: c.execute(text("UPDATE alembic_version SET version_num = 'f00d'")))
    status = await status_of(db_url)
    assert status.newer and status.usable and not status.is_current
    result = cli(["migrate"], db_url)
    assert result.returncode == 1
    assert "newer than this version's" in result.stderr and "Traceback" not in result.stderr
    async with serve_app(settings_for(db_url, NEWSLETTER_MIGRATE_ON_START="true")) as running:
        ready = await running.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["schema"] == "newer"
    assert (await status_of(db_url)).current == "f00d"


# --- /readyz -----------------------------------------------------------------------------


async def test_readyz_is_503_when_the_schema_is_behind(db_url: str) -> None:
    async with serve_app(settings_for(db_url)) as running:
        assert (await running.client.get("/readyz")).status_code == 200
        assert (await running.client.get("/healthz")).status_code == 200
        await running.db.downgrade("base")
        ready = await running.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "database": "ok", "schema": "outdated"}
        assert ready.headers["cache-control"] == "no-store"
        assert (await running.client.get("/healthz")).status_code == 200


async def test_readyz_is_503_when_postgresql_is_gone() -> None:
    if not POSTGRES:
        pytest.skip("PostgreSQL: set NEWSLETTER_TEST_POSTGRES_URL to run this")
    import asyncpg

    async with fresh_postgres_database(POSTGRES) as url:
        await migrate(url)
        async with serve_app(settings_for(url)) as running:
            assert (await running.client.get("/readyz")).status_code == 200
            await running.db.dispose()
            server = make_url(POSTGRES).set(drivername="postgresql")
            admin = await asyncpg.connect(server.render_as_string(hide_password=False))
            try:
                await admin.execute(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')
            finally:
                await admin.close()
            ready = await running.client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable", "database": "unreachable"}
            assert make_url(url).database not in ready.text


class Unreachable:
    async def schema_status(self) -> SchemaStatus:
        raise ConnectionRefusedError("connection to db.internal:5432 refused")


async def test_readyz_answers_503_without_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette(routes=health.routes)

    async def with_state(scope: Any, receive: Any, send: Any) -> None:
        scope["state"] = {"db": Unreachable()}
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=with_state)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": "unreachable"}
    assert "db.internal" not in ready.text and "db.internal" in caplog.text
