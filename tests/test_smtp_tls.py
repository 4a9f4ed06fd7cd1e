"""Sending over STARTTLS and implicit TLS with SMTP AUTH, to a real TLS SMTP server."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select
from support import SUBSCRIBE, SMTPRecorder, SMTPServer, free_port, make_list, serve_app

from service.models import OutboxMessage, OutboxStatus
from service.settings import Settings

USER, PASSWORD = "mailer", "s3cret-pass"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def tls_server(ca: trustme.CA, mode: str) -> Iterator[SMTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    handler = SMTPRecorder()
    options: dict[str, Any] = {"authenticator": authenticate, "auth_required": True}
    if mode == "starttls":
        options.update(tls_context=context, require_starttls=True)
    else:
        # The whole connection is TLS; aiosmtpd only tracks STARTTLS when it decides
        # whether AUTH may be offered, so tell it not to insist.
        options.update(ssl_context=context, auth_require_tls=False)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield SMTPServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


@pytest.fixture(params=["starttls", "tls"])
def secure_smtp(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[tuple[str, SMTPServer]]:
    for server in tls_server(ca, request.param):
        yield request.param, server


def tls_settings(
    settings: Settings, mode: str, server: SMTPServer, ca_file: Path, **kw: Any
) -> Settings:
    return settings.replace(
        smtp_tls=mode,
        smtp_port=server.port,
        smtp_username=USER,
        smtp_password=type(settings.smtp_password)(PASSWORD),
        smtp_ca_file=str(ca_file),
        **kw,
    )


async def test_delivers_over_tls_with_login(
    settings: Settings, secure_smtp: tuple[str, SMTPServer], ca: trustme.CA, tmp_path: Path
) -> None:
    mode, server = secure_smtp
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    configured = tls_settings(settings, mode, server, ca_file)
    await make_list(configured)
    async with serve_app(configured) as app:
        assert (
            await app.client.post(SUBSCRIBE, json={"email": "tls@example.com"})
        ).status_code == 202
        [mail] = await server.wait_for(1)
        assert mail.rcpt_tos == ["tls@example.com"]
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def outbox_row(app: Any) -> OutboxMessage:
    for _ in range(500):
        async with app.db.read() as session:
            row = await session.scalar(select(OutboxMessage))
        if row is not None and row.last_error:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError("no delivery attempt recorded")


async def test_wrong_password_and_untrusted_certificate_keep_mail_queued(
    settings: Settings, ca: trustme.CA, tmp_path: Path
) -> None:
    """Problems on our side are temporary: the message waits until the setting is fixed."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    for server in tls_server(ca, "starttls"):
        wrong = tls_settings(settings, "starttls", server, ca_file, retry_base=60.0)
        wrong = wrong.replace(smtp_password=type(settings.smtp_password)("wrong"))
        await make_list(wrong)
        async with serve_app(wrong) as app:
            await app.client.post(SUBSCRIBE, json={"email": "a@example.com"})
            row = await outbox_row(app)
            assert row.status == OutboxStatus.QUEUED
            assert row.last_error is not None and "login refused" in row.last_error
            assert "wrong" not in row.last_error

        other_ca = tmp_path / "other.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        untrusted = tls_settings(settings, "starttls", server, other_ca, retry_base=60.0)
        async with serve_app(untrusted) as app:
            async with app.db.write() as session:
                from sqlalchemy import delete

                await session.execute(delete(OutboxMessage))
            await app.client.post(SUBSCRIBE, json={"email": "b@example.com"})
            row = await outbox_row(app)
            assert row.status == OutboxStatus.QUEUED
            assert row.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in row.last_error
        assert server.received == []
