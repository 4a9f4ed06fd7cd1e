"""The worker acts on signups and sends their emails in batches: every signup of a batch
gets what it would get alone, and a worker in another process hears of new signups at
once rather than at its next poll."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from support import (
    SUBSCRIBE,
    SMTPServer,
    act_on_signups,
    make_list,
    serve_app,
)

from service.components import assemble
from service.db import Database
from service.keys import signing_key
from service.metrics import Metrics
from service.models import (
    ConsentRecord,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from service.settings import Settings, parse_rates
from service.subscriptions import erase
from service.suppressions import AddressKeys
from service.templating import make_environment
from service.worker import OutboxWorker


@asynccontextmanager
async def worker_elsewhere(settings: Settings) -> AsyncIterator[OutboxWorker]:
    """A worker as `newsletter worker` runs one: its own database engine, wake-up signal
    and mailer, sharing nothing with the app's process but the database."""
    db = Database.from_url(settings.database_url)
    parts = await assemble(settings, db, make_environment(), Metrics())
    task = asyncio.create_task(parts.worker.run())
    try:
        yield parts.worker
    finally:
        parts.worker.stop()
        await task
        await parts.mailer.close()
        await db.dispose()


async def statuses(db: Database) -> dict[str, SubscriptionStatus]:
    async with db.read() as session:
        rows = await session.execute(
            select(Subscriber.email, Subscription.status).join(
                Subscription, Subscription.subscriber_id == Subscriber.id
            )
        )
        return {email: status for email, status in rows}


async def test_one_batch_of_mixed_signups_gets_what_each_would_get_alone(
    settings: Settings, smtp: SMTPServer
) -> None:
    limited = settings.replace(rate_limit_address=parse_rates("1/10m,3/1d"))
    await make_list(limited)
    async with serve_app(limited) as app:
        # Before the batch: a confirmed reader, an inbox that had its confirmation, and a
        # person who was erased since.
        for email in ("confirmed@example.com", "limited+a@example.com", "gone@example.com"):
            assert (await app.client.post(SUBSCRIBE, json={"email": email})).status_code == 202
        earlier = {m.rcpt_tos[0]: m for m in await smtp.wait_for(3)}
        link = app.local(earlier["confirmed@example.com"].links["confirm"])
        assert (await app.client.post(link)).status_code == 303
        async with app.db.read() as session:
            gone = await session.scalar(
                select(Subscriber.id).where(Subscriber.email == "gone@example.com")
            )
        keys = AddressKeys(await signing_key(limited, app.db))
        assert gone is not None and await erase(app.db, gone, "alice", keys)

    batch = [
        "new@example.com",
        "twice@example.com",
        "twice@example.com",  # the same address twice in one batch
        "zoë@example.org",  # a non-ASCII local part (the relay offers SMTPUTF8)
        "confirmed@example.com",  # confirmed already: nothing to send
        "limited+b@example.com",  # the same inbox as limited+a: over its limit, no email
        "gone@example.com",  # erased since its confirmation: its inbox's limit still counts
    ]
    async with serve_app(limited.replace(run_worker=False)) as app:
        for email in batch:
            assert (await app.client.post(SUBSCRIBE, json={"email": email})).status_code == 202
    assert await act_on_signups(limited) == len(batch)  # one batch

    smtp.fail_next("451 4.7.1 Greylisted, try later")  # the first message of the batch
    async with serve_app(limited) as app:
        mails = await smtp.wait_for(3 + 3)
        await asyncio.sleep(0.3)  # longer than a retry's delay: nothing more may come
        later = Counter(m.rcpt_tos[0] for m in smtp.received[3:])
        assert later == Counter(["new@example.com", "twice@example.com", "zoë@example.org"])
        assert len(smtp.handler.attempted_ids) == 3 + 4  # the greylisted one, twice
        async with app.db.read() as session:
            rows = (await session.scalars(select(OutboxMessage))).all()
            consents = Counter(
                (
                    await session.execute(
                        select(Subscriber.email)
                        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
                        .join(ConsentRecord, ConsentRecord.subscription_id == Subscription.id)
                        .where(ConsentRecord.action == "subscribe")
                    )
                ).scalars()
            )
        assert {r.status for r in rows} == {OutboxStatus.SENT}
        assert sorted(r.attempts for r in rows) == [1] * 4 + [2]
        # Every signup is on record, the one with nothing to send too, but a confirmed one.
        assert consents == Counter(
            {
                "twice@example.com": 2,
                "limited+a@example.com": 1,
                "limited+b@example.com": 1,
                "new@example.com": 1,
                "zoë@example.org": 1,
                "gone@example.com": 1,
                "confirmed@example.com": 1,
            }
        )
        assert (await statuses(app.db)) == {
            "confirmed@example.com": SubscriptionStatus.CONFIRMED,
            "limited+a@example.com": SubscriptionStatus.PENDING,
            "limited+b@example.com": SubscriptionStatus.PENDING,
            "new@example.com": SubscriptionStatus.PENDING,
            "twice@example.com": SubscriptionStatus.PENDING,
            "zoë@example.org": SubscriptionStatus.PENDING,
            "gone@example.com": SubscriptionStatus.PENDING,
        }
        # Each email's link confirms: the nonce the batch stored is the one it mailed.
        for mail in mails[3:]:
            assert mail.message["To"] == mail.rcpt_tos[0]
            assert (await app.client.post(app.local(mail.links["confirm"]))).status_code == 303
        assert set((await statuses(app.db)).values()) == {
            SubscriptionStatus.CONFIRMED,
            SubscriptionStatus.PENDING,  # the inboxes over their limit
        }


async def test_a_worker_in_another_process_is_woken_by_a_signup_not_its_poll(
    settings: Settings, smtp: SMTPServer
) -> None:
    slow_poll = settings.replace(worker_poll_interval=3600.0)
    await make_list(slow_poll)
    async with (
        serve_app(slow_poll.replace(run_worker=False)) as app,
        worker_elsewhere(slow_poll),
    ):
        await asyncio.sleep(0.5)  # the worker has looked, found nothing, and waits an hour
        for i in range(3):
            reply = await app.client.post(SUBSCRIBE, json={"email": f"reader{i}@example.com"})
            assert reply.status_code == 202
            [*_, mail] = await smtp.wait_for(i + 1)
            assert mail.rcpt_tos == [f"reader{i}@example.com"]
        async with app.db.read() as session:
            sent = await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.SENT)
            )
        assert sent == 3
