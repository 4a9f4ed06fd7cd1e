"""The public answer never tells whether an address is known, in any state."""

from __future__ import annotations

import re

from support import SUBSCRIBE, Running, SMTPServer

from service.models import SubscriptionStatus


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
        headers = {k: v for k, v in response.headers.items() if k not in {"date"}}
        return response.status_code, response.content, headers

    # Put three addresses into the three states.
    for email in ("pending@example.com", "confirmed@example.com", "gone@example.com"):
        await subscribe(email)
    mails = await smtp.wait_for(3)
    by_rcpt = {m.rcpt_tos[0]: m.message for m in mails}

    def link(email: str, kind: str) -> str:
        body = by_rcpt[email].get_body(preferencelist=("plain",))
        assert body is not None
        return re.findall(rf"https://\S+/{kind}/\S+", body.get_content())[0]

    await app.client.post(app.local(link("confirmed@example.com", "confirm")))
    await app.client.post(app.local(link("gone@example.com", "unsubscribe")))

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
