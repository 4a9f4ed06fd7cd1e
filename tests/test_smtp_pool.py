"""SMTP connections are kept open and reused, and replaced when the server drops them."""

from __future__ import annotations

import asyncio
from collections import Counter
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from support import SUBSCRIBE, Received, Running, SMTPRecorder, SMTPServer, free_port

from service.mail import DeliveryError, SMTPMailer
from service.settings import Settings


def message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "news@example.com"
    msg["To"] = f"reader{n}@example.com"
    msg["Subject"] = f"Message {n}"
    msg["Message-ID"] = f"<pool-{n}@example.com>"
    msg.set_content("Hello")
    return msg


@pytest.fixture
def mail_settings(smtp: SMTPServer) -> Settings:
    """Only the SMTP side: these tests need no database."""
    return Settings.from_env(
        {
            "NEWSLETTER_SMTP_HOST": smtp.host,
            "NEWSLETTER_SMTP_PORT": str(smtp.port),
            "NEWSLETTER_SMTP_TLS": "none",
            "NEWSLETTER_SMTP_TIMEOUT": "5s",
        }
    )


async def test_many_emails_travel_over_few_connections(app: Running, smtp: SMTPServer) -> None:
    for i in range(12):
        response = await app.client.post(SUBSCRIBE, json={"email": f"reader{i}@example.com"})
        assert response.status_code == 202
    received = await smtp.wait_for(12)
    assert len({m.message["Message-ID"] for m in received}) == 12
    assert smtp.connection_count <= app.settings.worker_concurrency < 12


async def test_sequential_sends_reuse_one_connection(
    mail_settings: Settings, smtp: SMTPServer
) -> None:
    mailer = SMTPMailer(mail_settings)
    try:
        for i in range(5):
            await mailer.send(message(i))
    finally:
        await mailer.close()
    assert len(smtp.received) == 5
    assert smtp.connection_count == 1 and mailer.pool.opened == 1


async def test_concurrent_sends_open_at_most_the_pool_size(
    mail_settings: Settings, smtp: SMTPServer
) -> None:
    mailer = SMTPMailer(mail_settings, pool_size=3)
    try:
        await asyncio.gather(*(mailer.send(message(i)) for i in range(9)))
        await asyncio.gather(*(mailer.send(message(i)) for i in range(9, 18)))
    finally:
        await mailer.close()
    assert len(smtp.received) == 18
    assert mailer.pool.opened == 3 and smtp.connection_count == 3


async def test_a_connection_the_server_dropped_is_replaced(
    mail_settings: Settings, smtp: SMTPServer
) -> None:
    mailer = SMTPMailer(mail_settings)
    try:
        await mailer.send(message(1))
        smtp.hang_up()  # the server's idle timeout, between two messages
        await asyncio.sleep(0.2)
        await mailer.send(message(2))
    finally:
        await mailer.close()
    assert [m.message["Subject"] for m in smtp.received] == ["Message 1", "Message 2"]
    assert mailer.pool.opened == 2 and smtp.connection_count == 2


async def test_a_dropped_transaction_fails_once_and_the_next_send_reconnects(
    mail_settings: Settings, smtp: SMTPServer
) -> None:
    mailer = SMTPMailer(mail_settings)
    try:
        smtp.fail_next("drop")
        with pytest.raises(DeliveryError) as failed:
            await mailer.send(message(1))
        assert not failed.value.permanent
        await mailer.send(message(1))
    finally:
        await mailer.close()
    assert len(smtp.received) == 1 and mailer.pool.opened == 2


async def test_a_refused_recipient_leaves_the_connection_usable(
    mail_settings: Settings, smtp: SMTPServer
) -> None:
    mailer = SMTPMailer(mail_settings)
    try:
        smtp.fail_next("550 5.1.1 No such user here")
        with pytest.raises(DeliveryError) as refused:
            await mailer.send(message(1))
        assert refused.value.permanent
        await mailer.send(message(2))
    finally:
        await mailer.close()
    assert len(smtp.received) == 1 and mailer.pool.opened == 1


async def test_idle_connections_are_closed(mail_settings: Settings, smtp: SMTPServer) -> None:
    mailer = SMTPMailer(mail_settings.replace(smtp_idle_timeout=0.1))
    try:
        await mailer.send(message(1))
        await asyncio.sleep(0.3)
        assert mailer.pool.idle == 0  # closed by the pool, not left for the server to drop
        await mailer.send(message(2))
    finally:
        await mailer.close()
    assert mailer.pool.opened == 2


class ClosingButStillReading(SMTPRecorder):
    """A server that answers 421 at DATA to the ``closing`` attempts and then, instead of
    closing, goes on reading: it takes in whatever else comes on that connection (and
    delivers it) while answering 421 again, as a server in the middle of shutting down
    might. A client that reused such a connection would resend what was delivered."""

    def __init__(self, closing: int) -> None:
        super().__init__()
        self.closing = closing
        self.closed_peers: set[Any] = set()
        self.after_421 = 0  # transactions sent on a connection after its 421

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        if session.peer in self.closed_peers:
            self.after_421 += 1
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), data))
            return "421 4.3.2 Closing transmission channel"
        self.peers.append(session.peer)
        if self.closing > 0:
            self.closing -= 1
            self.closed_peers.add(session.peer)
            return "421 4.3.2 Closing transmission channel"
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), data))
        return "250 OK queued"


async def test_after_a_421_at_data_the_connection_is_closed_never_reused() -> None:
    handler = ClosingButStillReading(closing=3)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), decode_data=False)
    controller.start()
    settings = Settings.from_env(
        {
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(controller.port),
            "NEWSLETTER_SMTP_TLS": "none",
            "NEWSLETTER_SMTP_TIMEOUT": "5s",
        }
    )
    mailer = SMTPMailer(settings, pool_size=2)
    delivered: list[int] = []
    reasons: list[str] = []

    async def send_until_accepted(n: int) -> None:
        for _ in range(10):  # as the worker retries a temporary failure
            try:
                await mailer.send(message(n))
            except DeliveryError as failed:
                reasons.append(failed.reason)
                continue
            delivered.append(n)
            return

    try:
        await asyncio.gather(*(send_until_accepted(n) for n in range(8)))
    finally:
        await mailer.close()
        controller.stop()
    assert sorted(delivered) == list(range(8))
    assert reasons == ["421 4.3.2 Closing transmission channel"] * 3  # temporary: retried
    ids = Counter(m.message["Message-ID"] for m in handler.received)
    assert ids == Counter({f"<pool-{n}@example.com>": 1 for n in range(8)})  # no duplicates
    assert handler.after_421 == 0
    assert mailer.pool.opened == 2 + 3  # a new connection for each one that was closed
