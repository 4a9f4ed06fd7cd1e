"""The public answer never tells whether an address is known, in any state."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable

from support import SUBSCRIBE, Running, SMTPServer, make_list, serve_app, signups_acted_on

from service.bots import FormStamps
from service.keys import signing_key
from service.models import SubscriptionStatus
from service.settings import Settings, parse_rates


async def test_same_answer_for_new_pending_confirmed_and_unsubscribed(
    app: Running, smtp: SMTPServer
) -> None:
    async def subscribe(email: str, via_form: bool = False) -> tuple[int, bytes, dict[str, str]]:
        if via_form:
            response = await app.client.post(
                SUBSCRIBE, data={"email": email}, headers={"Origin": "https://www.example.com"}
            )
        else:
            response = await app.client.post(
                SUBSCRIBE, json={"email": email}, headers={"Origin": "https://www.example.com"}
            )
        # Date and the request id differ from one request to the next, whatever the address.
        headers = {k: v for k, v in response.headers.items() if k not in {"date", "x-request-id"}}
        return response.status_code, response.content, headers

    # Put three addresses into the three states.
    for email in ("pending@example.com", "confirmed@example.com", "gone@example.com"):
        await subscribe(email)
    mails = await smtp.wait_for(3)
    by_rcpt = {m.rcpt_tos[0]: m for m in mails}
    await app.client.post(app.local(by_rcpt["confirmed@example.com"].links["confirm"]))
    await app.client.post(app.local(by_rcpt["gone@example.com"].links["unsubscribe"]))

    answers = {
        "new": await subscribe("new@example.com"),
        "pending": await subscribe("pending@example.com"),
        "confirmed": await subscribe("confirmed@example.com"),
        "unsubscribed": await subscribe("gone@example.com"),
        "new (different case)": await subscribe("NEW2@Example.com"),
        "confirmed (different case)": await subscribe("Confirmed@EXAMPLE.com"),
    }
    first = answers["new"]
    assert first[0] == 202
    for state, answer in answers.items():
        assert answer == first, f"answer for a {state} address differs"
    form_answers = {
        state: await subscribe(email, via_form=True)
        for state, email in [("new", "new3@example.com"), ("confirmed", "confirmed@example.com")]
    }
    assert form_answers["new"] == form_answers["confirmed"]
    assert form_answers["new"][1] == first[1]

    # And the states really were different underneath.
    await signups_acted_on(app.db)
    async with app.db.read() as session:
        from sqlalchemy import select

        from service.models import Subscriber, Subscription

        rows = dict(
            (
                await session.execute(
                    select(Subscriber.email, Subscription.status).join(
                        Subscription, Subscription.subscriber_id == Subscriber.id
                    )
                )
            ).all()
        )
    assert rows["confirmed@example.com"] == SubscriptionStatus.CONFIRMED
    assert rows["pending@example.com"] == SubscriptionStatus.PENDING
    assert rows["gone@example.com"] == SubscriptionStatus.PENDING  # re-subscribed


async def test_same_bytes_for_every_kind_of_signup(settings: Settings, smtp: SMTPServer) -> None:
    """Known, pending, unsubscribed, throttled and bot signups: the same answer, byte for byte.

    The states are made first; then a server with its worker off answers signups of every
    kind, interleaved at random. That each kind also takes as long as a new address is
    measured by ``python bench/abuse_bench.py --scenario answer-times``.
    """
    await make_list(settings)
    await make_list(settings, "second")
    guarded = settings.replace(
        rate_limit_ip=parse_rates("100000/1m"),
        rate_limit_list=parse_rates("100000/1m"),
        rate_limit_address=parse_rates("1/10m,3/1d"),
        min_fill_time=2.0,
    )
    async with serve_app(guarded) as app:
        # Forms shown a while ago, as a reader's would be: no proof of work asked. Each
        # stamp is good for one signup.
        stamps = FormStamps(await signing_key(guarded, app.db))
        shown = itertools.count()

        def stamp(slug: str) -> str:
            return stamps.make(slug, time.time() - 60 - next(shown))  # one second apart

        for email in ("pending@example.com", "confirmed@example.com", "gone@example.com"):
            signup = {"email": email, "form_stamp": stamp("daily")}
            assert (await app.client.post(SUBSCRIBE, json=signup)).status_code == 202
        mails = {m.rcpt_tos[0]: m for m in await smtp.wait_for(3)}
        for email, kind, answer in (
            ("confirmed@example.com", "confirm", 303),
            ("gone@example.com", "unsubscribe", 200),
        ):
            link = app.local(mails[email].links[kind])
            assert (await app.client.post(link)).status_code == answer

    second = "/api/v1/lists/second/subscriptions"
    counter = iter(range(1_000_000))
    kinds: dict[str, Callable[[], tuple[str, dict[str, str]]]] = {
        "new": lambda: (SUBSCRIBE, {"email": f"new{next(counter)}@example.com"}),
        "pending": lambda: (SUBSCRIBE, {"email": "pending@example.com"}),
        "confirmed": lambda: (SUBSCRIBE, {"email": "Confirmed@example.com"}),
        "unsubscribed": lambda: (SUBSCRIBE, {"email": "gone@example.com"}),
        # Had its confirmation minutes ago on another list: the inbox limit holds it back.
        "throttled": lambda: (second, {"email": "pending+x@example.com"}),
        "honeypot": lambda: (SUBSCRIBE, {"email": "bot@example.com", "url": "http://x.example"}),
    }
    rounds = 10
    order = [kind for kind in kinds for _ in range(rounds)]
    random.Random(7).shuffle(order)
    answers: dict[str, set[tuple[int, bytes, tuple[tuple[str, str], ...]]]] = {
        k: set() for k in kinds
    }
    async with serve_app(guarded.replace(run_worker=False)) as app:
        for kind in order:
            path, data = kinds[kind]()
            slug = path.split("/")[4]
            response = await app.client.post(path, json={**data, "form_stamp": stamp(slug)})
            headers = tuple(
                (k, v) for k, v in response.headers.items() if k not in {"date", "x-request-id"}
            )
            answers[kind].add((response.status_code, response.content, headers))
    everything = set().union(*answers.values())
    assert len(everything) == 1, everything
    assert next(iter(everything))[0] == 202
