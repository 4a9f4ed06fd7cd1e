"""Fixtures: a real SMTP server (aiosmtpd), a database per test, the app in process, an
admin signed up, and one headless Chromium for the whole run."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from playwright.async_api import Browser, async_playwright
from support import (
    PASSWORD,
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

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.settings import Settings


def _smtp_server(*, smtputf8: bool) -> Iterator[SMTPServer]:
    handler = SMTPRecorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        decode_data=False,
        enable_SMTPUTF8=smtputf8,
    )
    controller.start()
    try:
        yield SMTPServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """A real SMTP server on loopback that records what it accepts."""
    yield from _smtp_server(smtputf8=True)


@pytest.fixture
def plain_smtp() -> Iterator[SMTPServer]:
    """A relay that does not offer SMTPUTF8 (most do; some corporate ones do not)."""
    yield from _smtp_server(smtputf8=False)


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
            "NEWSLETTER_POW_SURGE_LIST": "",
            "NEWSLETTER_POW_SURGE_CLIENT": "",
            # Tests change lists behind the server's back and expect it to see that.
            "NEWSLETTER_LIST_CACHE_TTL": "0",
        }
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    """The app, in process, with a list ``daily`` that https://www.example.com may embed."""
    await make_list(settings)
    async with serve_app(settings) as running:
        yield running


@pytest.fixture
async def served_app(settings: Settings) -> AsyncIterator[Running]:
    """As ``app``, but under uvicorn on a real socket on 127.0.0.1 (raw HTTP bytes)."""
    await make_list(settings)
    async with serve_app(settings, socket=True) as running:
        yield running


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[Running]:
    """As ``app``, with an admin user ``alice`` (password ``support.PASSWORD``)."""
    await make_list(settings)
    async with serve_app(settings) as running:
        await create_user(running.db, "alice", PASSWORD)
        yield running


@pytest.fixture
async def token(admin: Running) -> str:
    """An API token of ``alice``'s."""
    return await create_token(admin.db, "alice", "tests")


# The browser ------------------------------------------------------------------------------

CHROMIUM = os.environ.get("NEWSLETTER_TEST_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = Path(CHROMIUM).exists()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """Debian's headless Chromium (/usr/bin/chromium), started once for the whole run.

    Without it the browser tests skip, unless NEWSLETTER_TEST_REQUIRE_BROWSER=1 (CI)
    makes that a failure. It lives on the session's event loop, so the tests using it run
    there too (``pytest.mark.asyncio(loop_scope="session")`` in their modules).
    """
    if not HAVE_CHROMIUM:
        if os.environ.get("NEWSLETTER_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"browser tests required but {CHROMIUM} is missing")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser(db_url: str, chromium: Browser) -> AsyncIterator[Browser]:
    """The run's Chromium; each test opens contexts (fresh profiles) of its own, closed after.

    It asks for ``db_url`` first, so a variant that skips (PostgreSQL without a server)
    skips before Chromium is started.
    """
    before = set(chromium.contexts)
    yield chromium
    for context in chromium.contexts:
        if context not in before:
            await context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heavy scenarios first: run in parallel, they start early and the short tests fill
    in around them, rather than one long test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("scenario") is None)
