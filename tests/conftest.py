"""Fixtures: a real SMTP server (aiosmtpd) and the real app on 127.0.0.1 per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from support import (
    Running,
    SMTPRecorder,
    SMTPServer,
    free_port,
    fresh_postgres_database,
    make_list,
    migrate,
    serve_app,
    service_env,
)

from service.settings import Settings


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    handler = SMTPRecorder()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), decode_data=False, enable_SMTPUTF8=True
    )
    controller.start()
    try:
        yield SMTPServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


POSTGRES = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Every test that stores anything runs on a SQLite file and on PostgreSQL.

    PostgreSQL runs need NEWSLETTER_TEST_POSTGRES_URL (e.g. postgresql://root@127.0.0.1/test);
    each test gets a database of its own, dropped afterwards. The schema is made by the
    migrations, as in production.
    """
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'newsletter.db'}"
        await migrate(url)
        yield url
        return
    if not POSTGRES:
        pytest.skip("PostgreSQL: set NEWSLETTER_TEST_POSTGRES_URL to run these too")
    async with fresh_postgres_database(POSTGRES) as url:
        await migrate(url)
        yield url


@pytest.fixture
def settings(db_url: str, smtp: SMTPServer) -> Settings:
    return Settings.from_env(
        {
            **service_env(db_url, smtp),
            "NEWSLETTER_MAIL_FROM": '"Zeitung Müller" <news@example.com>',
            "NEWSLETTER_WORKER_POLL_INTERVAL": "50ms",
            "NEWSLETTER_RETRY_BASE": "50ms",
            "NEWSLETTER_RETRY_MAX_DELAY": "200ms",
            # Limits and bot checks are off here; tests/test_abuse.py turns them on.
            "NEWSLETTER_RATE_LIMIT_IP": "",
            "NEWSLETTER_RATE_LIMIT_LIST": "",
            "NEWSLETTER_RATE_LIMIT_ADDRESS": "",
            "NEWSLETTER_RATE_LIMIT_CONFIRMATIONS": "",
            "NEWSLETTER_MIN_FILL_TIME": "0",
            # Tests change lists behind the server's back and expect it to see that.
            "NEWSLETTER_LIST_CACHE_TTL": "0",
        }
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    """The app with a list ``daily`` that https://www.example.com may embed."""
    await make_list(settings)
    async with serve_app(settings) as running:
        yield running
