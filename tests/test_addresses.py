"""Every address told "check your inbox" is one the service can mail: internationalised
domains go out in ASCII, non-ASCII local parts need a relay that offers SMTPUTF8, and
RFC 5321's length limits are kept at the door."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support import SUBSCRIBE, Running, SMTPServer, make_list, serve_app

from service.mail import DeliveryError, SMTPMailer
from service.mail.render import wire_bytes
from service.models import OutboxMessage
from service.settings import Settings


@pytest.fixture
async def plain_app(settings: Settings, plain_smtp: SMTPServer) -> AsyncIterator[Running]:
    relayed = settings.replace(smtp_host=plain_smtp.host, smtp_port=plain_smtp.port)
    await make_list(relayed)
    async with serve_app(relayed) as running:
        yield running


async def test_an_internationalised_domain_is_mailed_in_ascii_through_any_relay(
    plain_app: Running, plain_smtp: SMTPServer
) -> None:
    reply = await plain_app.client.post(SUBSCRIBE, json={"email": "Leser@Bücher.example"})
    assert reply.status_code == 202
    [mail] = await plain_smtp.wait_for(1)
    assert mail.rcpt_tos == ["leser@xn--bcher-kva.example"]
    assert mail.message["To"] == "leser@xn--bcher-kva.example"
    assert mail.data.isascii()
    assert mail.links["confirm"]


async def test_a_non_ascii_local_part_is_mailed_with_smtputf8(
    app: Running, smtp: SMTPServer
) -> None:
    reply = await app.client.post(SUBSCRIBE, json={"email": "zoë@example.org"})
    assert reply.status_code == 202
    [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ["zoë@example.org"]
    assert mail.message["To"] == "zoë@example.org"
    assert mail.links["confirm"]


async def test_a_non_ascii_local_part_is_refused_at_signup_when_the_relay_cannot_take_it(
    plain_app: Running, plain_smtp: SMTPServer
) -> None:
    # Once the service has talked to its relay it knows; the first mail shows it has.
    first = await plain_app.client.post(SUBSCRIBE, json={"email": "first@example.org"})
    assert first.status_code == 202
    await plain_smtp.wait_for(1)
    reply = await plain_app.client.post(
        SUBSCRIBE, json={"email": "zoë@example.org"}, headers={"Origin": "https://www.example.com"}
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["error"] == "invalid_input"
    assert "before the @" in body["fields"]["email"]
    assert reply.headers["access-control-allow-origin"] == "https://www.example.com"


async def test_sending_to_a_non_ascii_local_part_without_smtputf8_fails_for_good(
    settings: Settings, plain_smtp: SMTPServer, app: Running
) -> None:
    """A signup taken before the relay's limits were known: no endless retries."""
    from support import emails_for

    from service.lists import get_list
    from service.models import utcnow

    relayed = settings.replace(smtp_host=plain_smtp.host, smtp_port=plain_smtp.port)
    mailing_list = await get_list(app.db, "daily")
    assert mailing_list is not None
    row = OutboxMessage(
        template="confirm",
        to_address="zoë@example.org",
        subscription_id=1,
        payload={"nonce": "n", "expires_at": 2_000_000_000},
        message_id="<x@example.com>",
        created_at=utcnow(),
        next_attempt_at=utcnow(),
    )
    message = emails_for(relayed).build(row, mailing_list)
    assert "zoë@example.org".encode() in wire_bytes(message)
    mailer = SMTPMailer(relayed, pool_size=1)
    try:
        with pytest.raises(DeliveryError) as failed:
            await mailer.send(message)
    finally:
        await mailer.close()
    assert failed.value.permanent
    assert "SMTPUTF8" in failed.value.reason
    assert plain_smtp.received == []


@pytest.mark.parametrize(
    ("email", "complaint"),
    [
        ("a" * 65 + "@example.com", "before the @-sign"),
        ("reader@" + "d" * 64 + ".example", "1 character too many"),
        ("x" * 60 + "@" + ".".join(["d" * 60] * 4) + ".example", "at most 254"),
        ("é" * 40 + "@example.com", "80 octets as sent"),
        ("a" * 60 + "@" + ".".join(["ü" * 45] * 4) + ".example", "too long"),
    ],
    ids=[
        "local part of 65",
        "label of 64",
        "address over 254",
        "40 characters, 80 octets",
        "domain long in ASCII",
    ],
)
async def test_rfc_5321_length_limits_are_a_clear_422(
    app: Running, smtp: SMTPServer, email: str, complaint: str
) -> None:
    reply = await app.client.post(SUBSCRIBE, json={"email": email})
    assert reply.status_code == 422
    assert complaint in reply.json()["fields"]["email"]


async def test_the_relay_is_asked_at_start_up_even_by_a_process_without_a_worker(
    settings: Settings, plain_smtp: SMTPServer
) -> None:
    relayed = settings.replace(
        smtp_host=plain_smtp.host, smtp_port=plain_smtp.port, run_worker=False
    )
    await make_list(relayed)
    async with serve_app(relayed) as app:
        for _ in range(400):  # the probe runs beside start-up; it takes a moment
            reply = await app.client.post(SUBSCRIBE, json={"email": "zoë@example.org"})
            if reply.status_code == 422:
                break
            await asyncio.sleep(0.05)
        assert reply.status_code == 422 and "before the @" in reply.json()["fields"]["email"]
    assert plain_smtp.received == []  # it only asked; nothing was sent
