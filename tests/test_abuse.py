"""Abuse: rate limits per client, list and inbox; bots; the service-wide cap; retention."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from support import (
    SUBSCRIBE,
    SMTPServer,
    clear_of_window_end,
    make_list,
    serve_app,
    signups_acted_on,
)

from service.bots import FormStamps
from service.challenges import solve
from service.db import Database
from service.keys import signing_key
from service.limits import canonical_address
from service.models import (
    ConsentRecord,
    RateCounter,
    SignupRequest,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.retention import purge
from service.settings import Settings, parse_rates

PROXIED = {"trusted_proxies": ("127.0.0.1/32",)}
CHALLENGE = "/api/v1/lists/daily/challenge"


def from_ip(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


async def settle(smtp: SMTPServer, seconds: float = 0.4) -> None:
    """Give the worker time to act on signups and send what it will."""
    await asyncio.sleep(seconds)


async def count(db: Database, model: type, **where: object) -> int:
    async with db.read() as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return int(await session.scalar(query) or 0)


async def test_client_limit_answers_429_with_retry_after_on_every_way_in(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    limited = settings.replace(rate_limit_ip=parse_rates("3/1m"), **PROXIED)
    await clear_of_window_end(60)
    async with serve_app(limited) as app:
        for n in range(3):
            ok = await app.client.post(
                SUBSCRIBE, json={"email": f"r{n}@example.com"}, headers=from_ip("81.2.69.1")
            )
            assert ok.status_code == 202
        refused = await app.client.post(
            SUBSCRIBE, json={"email": "r9@example.com"}, headers=from_ip("81.2.69.1")
        )
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"] == "too_many_requests"
        assert "Too many signups from your network" in refused.json()["message"]
        # The classic form post and the hosted page's post meet the same limit.
        form = await app.client.post(
            SUBSCRIBE,
            data={"email": "r10@example.com"},
            headers={**from_ip("81.2.69.1"), "Accept": "text/html"},
        )
        assert form.status_code == 429 and "Too many signups" in form.text
        assert "retry-after" in form.headers
        # Another reader is not affected.
        other = await app.client.post(
            SUBSCRIBE, json={"email": "o@example.com"}, headers=from_ip("81.2.69.2")
        )
        assert other.status_code == 202
        await smtp.wait_for(4)
    await settle(smtp)
    assert sorted(m.rcpt_tos[0] for m in smtp.received) == [
        "o@example.com",
        "r0@example.com",
        "r1@example.com",
        "r2@example.com",
    ]


async def test_limits_hold_across_two_instances_sharing_a_database(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    limited = settings.replace(rate_limit_ip=parse_rates("4/1m"), **PROXIED)
    await clear_of_window_end(60)
    async with serve_app(limited) as one, serve_app(limited) as two:
        answers = []
        for n in range(6):
            app = one if n % 2 else two
            reply = await app.client.post(
                SUBSCRIBE, json={"email": f"x{n}@example.com"}, headers=from_ip("81.2.69.7")
            )
            answers.append(reply.status_code)
    assert answers == [202, 202, 202, 202, 429, 429]


async def test_list_limit_counts_everyone_together(settings: Settings, smtp: SMTPServer) -> None:
    await make_list(settings)
    await make_list(settings, "other")
    limited = settings.replace(rate_limit_list=parse_rates("2/1m"), **PROXIED)
    await clear_of_window_end(60)
    async with serve_app(limited) as app:
        codes = []
        for n in range(3):
            reply = await app.client.post(
                SUBSCRIBE, json={"email": f"l{n}@example.com"}, headers=from_ip(f"81.2.70.{n}")
            )
            codes.append(reply.status_code)
        assert codes == [202, 202, 429]
        assert "to this list" in reply.json()["message"]
        elsewhere = await app.client.post(
            "/api/v1/lists/other/subscriptions", json={"email": "l9@example.com"}
        )
        assert elsewhere.status_code == 202


def test_canonical_address_joins_what_reaches_one_inbox() -> None:
    same = ["Victim@Gmail.com", "v.i.c.t.i.m+news@gmail.com", "victim@googlemail.com"]
    assert {canonical_address(a) for a in same} == {"victim@gmail.com"}
    assert canonical_address("First.Last+x@Example.org") == "first.last@example.org"
    assert canonical_address("first.last@example.org") != canonical_address("firstlast@example.org")


async def test_rate_counters_keep_no_address(settings: Settings, smtp: SMTPServer) -> None:
    """An inbox's counters are named by a keyed hash of it, not the address."""
    await make_list(settings)
    limited = settings.replace(rate_limit_address=parse_rates("3/10m,5/1d"))
    async with serve_app(limited) as app:
        await app.client.post(SUBSCRIBE, json={"email": "First.Last+x@Example.org"})
        await smtp.wait_for(1)
        async with app.db.read() as session:
            keys = list(await session.scalars(select(RateCounter.key)))
    assert any(k.startswith("inbox:") for k in keys), keys
    assert not any("first" in k.lower() or "example.org" in k.lower() for k in keys), keys


async def test_inbox_limit_is_silent_and_spans_lists(settings: Settings, smtp: SMTPServer) -> None:
    for slug in ("daily", "weekly", "sports", "tech"):
        await make_list(settings, slug)
    limited = settings.replace(rate_limit_address=parse_rates("1/10m,3/1d"))
    await clear_of_window_end(600)
    async with serve_app(limited) as app:
        answers = set()
        for slug, address in [
            ("daily", "victim@gmail.com"),
            ("weekly", "Victim+w@gmail.com"),
            ("sports", "v.ictim@googlemail.com"),
            ("tech", "reader@example.com"),
        ]:
            reply = await app.client.post(
                f"/api/v1/lists/{slug}/subscriptions", json={"email": address}
            )
            answers.add((reply.status_code, reply.content))
        assert len(answers) == 1  # the same 202 for all, throttled or not
        await smtp.wait_for(2)
        await settle(smtp)
        # The signups are recorded (pending); only the emails were held back.
        assert await count(app.db, Subscription, status=SubscriptionStatus.PENDING) == 4
    assert sorted(m.rcpt_tos[0] for m in smtp.received) == [
        "reader@example.com",
        "victim@gmail.com",
    ]


async def test_only_the_honeypot_drops_a_signup_and_a_quick_one_pays_a_proof_of_work(
    settings: Settings, smtp: SMTPServer
) -> None:
    """Whoever is told "check your inbox" gets the email: a signal that only suggests a bot
    (no stamp, a forged one, a form sent back too soon) asks for a proof of work, clearly;
    only the honeypot, which no person fills, is dropped silently."""
    await make_list(settings)
    checking = settings.replace(min_fill_time=2.0)
    async with serve_app(checking) as app:
        pot = await app.client.post(
            SUBSCRIBE, data={"email": "pot@example.com", "url": "http://spam.example"}
        )
        assert pot.status_code == 202
        key = await signing_key(checking, app.db)
        fresh = (await app.client.get(CHALLENGE)).json()["form_stamp"]
        suspects = {
            "no-stamp": {"email": "nostamp@example.com", "elapsed_ms": "99999"},
            "bad-stamp": {"email": "forged@example.com", "form_stamp": "1.AAAAAAAAAAAAAAAAAAAAAA"},
            "too-fast": {"email": "quick@example.com", "form_stamp": fresh},
        }
        for reason, fields in suspects.items():
            refused = await app.client.post(SUBSCRIBE, data=fields)
            assert refused.status_code == 403, reason
            body = refused.json()
            assert body["error"] == "proof_of_work", reason
            assert "/api/v1/lists/daily/challenge" in body["message"]
            # Paying the work gets the signup through, as the box does by itself.
            puzzle = (await app.client.get(CHALLENGE)).json()
            paid = {
                **fields,
                "pow_challenge": puzzle["challenge"],
                "pow_solution": solve(puzzle["challenge"], puzzle["difficulty"]),
            }
            assert (await app.client.post(SUBSCRIBE, data=paid)).status_code == 202, reason
        # A stamp old enough needs nothing more, once: used again, or kept longer than a
        # challenge lives, it is no proof (a flood cannot live on one stamp).
        earlier = FormStamps(key).make("daily", time.time() - 3)
        slow = await app.client.post(
            SUBSCRIBE, data={"email": "slow@example.com", "form_stamp": earlier}
        )
        assert slow.status_code == 202
        again = await app.client.post(
            SUBSCRIBE, data={"email": "again@example.com", "form_stamp": earlier}
        )
        assert again.status_code == 403 and again.json()["error"] == "proof_of_work"
        stale = FormStamps(key).make("daily", time.time() - checking.pow_lifetime - 1)
        old = await app.client.post(
            SUBSCRIBE, data={"email": "old@example.com", "form_stamp": stale}
        )
        assert old.status_code == 403 and old.json()["error"] == "proof_of_work"
        await smtp.wait_for(4)
        await settle(smtp)
        assert sorted(m.rcpt_tos[0] for m in smtp.received) == [
            "forged@example.com",
            "nostamp@example.com",
            "quick@example.com",
            "slow@example.com",
        ]
        assert await count(app.db, Subscriber) == 4
        assert await count(app.db, SignupRequest) == 0
        metrics = (await app.client.get("/metrics")).text
        for reason in [*suspects, "reused-stamp", "old-stamp"]:
            assert f'newsletter_signups_challenged_total{{reason="{reason}"}} 1.0' in metrics
        assert 'newsletter_signups_dropped_total{reason="honeypot"} 1.0' in metrics


async def test_service_wide_cap_keeps_signups_waiting(settings: Settings, smtp: SMTPServer) -> None:
    await make_list(settings)
    capped = settings.replace(rate_limit_confirmations=parse_rates("2/1h"))
    async with serve_app(capped) as app:
        for n in range(4):
            reply = await app.client.post(SUBSCRIBE, json={"email": f"c{n}@example.com"})
            assert reply.status_code == 202
        await smtp.wait_for(2)
        await settle(smtp)
        assert len(smtp.received) == 2
        # Not lost: the other two wait for the next window.
        assert await count(app.db, SignupRequest) == 2
        metrics = (await app.client.get("/metrics")).text
        assert "newsletter_signups_waiting 2.0" in metrics


async def test_unconfirmed_signups_are_purged_after_the_retention(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings) as app:
        for email in ("gone1@example.com", "gone2@example.com", "kept@example.com"):
            await app.client.post(SUBSCRIBE, json={"email": email})
        mails = await smtp.wait_for(3)
        kept = next(m for m in mails if m.rcpt_tos == ["kept@example.com"])
        assert (await app.client.post(app.local(kept.links["confirm"]))).status_code == 303
        long_ago = utcnow() - timedelta(days=31)
        async with app.db.write() as session:
            await session.execute(update(Subscription).values(subscribed_at=long_ago))

        purged = await purge(app.db, settings)
        assert (purged.subscriptions, purged.subscribers) == (2, 2)
        async with app.db.read() as session:
            emails = set((await session.scalars(select(Subscriber.email))).all())
            consent = await session.scalar(select(func.count()).select_from(ConsentRecord))
        assert emails == {"kept@example.com"}
        assert consent == 2  # the confirmed reader's signup and confirmation
        again = await purge(app.db, settings)
        assert (again.subscriptions, again.subscribers) == (0, 0)


@pytest.mark.scenario
async def test_subscription_bombing_is_shrugged_off(settings: Settings, smtp: SMTPServer) -> None:
    """3,000 signups of one victim from 200 addresses over 40 lists, readers in between.

    With the default limits, the victim gets one email, every reader gets theirs, and the
    attacking addresses are refused (429) once over their limit. How quickly the service
    answers meanwhile is measured by ``python bench/abuse_bench.py --scenario bombing``.
    """
    defaults = Settings.from_env({})
    lists = [f"list{n}" for n in range(40)]
    for slug in lists:
        await make_list(settings, slug)
    guarded = settings.replace(
        rate_limit_ip=defaults.rate_limit_ip,
        rate_limit_list=defaults.rate_limit_list,
        rate_limit_address=defaults.rate_limit_address,
        rate_limit_confirmations=defaults.rate_limit_confirmations,
        **PROXIED,
    )
    # 15 signups from each address in a burst: over the default 10 a minute, so some are
    # refused (spread over the run, a minute's boundary could split them 8 and 7).
    addresses = [f"81.2.{n // 100}.{n % 100 + 1}" for n in range(200)]
    variants = ["victim@gmail.com", "Victim@Gmail.com", "v.i.c.t.i.m+{n}@gmail.com"]
    attack = [
        (addresses[n // 15], lists[n % 40], variants[n % 3].format(n=n)) for n in range(3_000)
    ]
    readers = [(f"93.184.{n}.1", lists[n % 40], f"reader{n}@example.org") for n in range(40)]
    requests = list(attack)
    for n, reader in enumerate(readers):  # readers arrive throughout the attack
        requests.insert(n * 76 + 37, reader)

    statuses: Counter[int] = Counter()
    reader_answers: dict[str, int] = {}
    async with serve_app(guarded) as app:
        queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        for item in requests:
            queue.put_nowait(item)

        async def client() -> None:
            while not queue.empty():
                ip, slug, email = queue.get_nowait()
                reply = await app.client.post(
                    f"/api/v1/lists/{slug}/subscriptions",
                    json={"email": email},
                    headers=from_ip(ip),
                )
                statuses[reply.status_code] += 1
                if email.startswith("reader"):
                    reader_answers[email] = reply.status_code

        await asyncio.gather(*(client() for _ in range(32)))
        await smtp.wait_for(1 + len(readers))
        await signups_acted_on(app.db)
        await settle(smtp, 1.0)

    print(f"\n{len(requests)} signups: {dict(statuses)}")
    to_victim = [m for m in smtp.received if canonical_address(m.rcpt_tos[0]) == "victim@gmail.com"]
    assert len(to_victim) == 1
    assert set(reader_answers.values()) == {202}
    delivered = Counter(m.rcpt_tos[0] for m in smtp.received)
    assert all(delivered[email] == 1 for _, _, email in readers)
    assert statuses[429] > 0 and set(statuses) <= {202, 429}
