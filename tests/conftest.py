"""Fixtures: a real SMTP server (aiosmtpd) and the real app on 127.0.0.1 per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from support import (
    PUBLIC_URL,
    SECRET,
    Running,
    SMTPRecorder,
    SMTPServer,
    free_port,
    make_list,
    serve_app,
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


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'newsletter.db'}"


@pytest.fixture
def settings(db_url: str, smtp: SMTPServer) -> Settings:
    return Settings.from_env(
        {
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_BASE_URL": PUBLIC_URL,
            "NEWSLETTER_SECRET_KEY": SECRET,
            "NEWSLETTER_SMTP_HOST": smtp.host,
            "NEWSLETTER_SMTP_PORT": str(smtp.port),
            "NEWSLETTER_SMTP_TLS": "none",
            "NEWSLETTER_SMTP_TIMEOUT": "5s",
            "NEWSLETTER_MAIL_FROM": '"Zeitung Müller" <news@example.com>',
            "NEWSLETTER_WORKER_POLL_INTERVAL": "50ms",
            "NEWSLETTER_RETRY_BASE": "50ms",
            "NEWSLETTER_RETRY_MAX_DELAY": "200ms",
        }
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    """The app with a list ``daily`` that https://www.example.com may embed."""
    await make_list(settings)
    async with serve_app(settings) as running:
        yield running
