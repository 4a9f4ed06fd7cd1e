"""Webhooks: every change arrives at a real receiver on loopback, signed (verified with the
`standardwebhooks` reference library), through 500s, hangs and dropped connections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from receiver import Receiver, faulty, payloads, types
from sqlalchemy import select
from support import (
    SUBSCRIBE,
    Running,
    SMTPServer,
    bearer,
    free_port,
    make_list,
    serve_app,
)

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.models import WebhookDelivery
from service.settings import Settings

HOOKS = "/api/v1/admin/webhooks"


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.replace(
        webhook_allow_private=True,
        webhook_timeout=0.3,
        webhook_retry_base=0.01,
        worker_lease=30.0,
    )


async def _admin(settings: Settings) -> Any:
    await make_list(settings)
    return serve_app(settings)


async def _token(app: Running) -> dict[str, str]:
    await create_user(app.db, "alice", "correct horse battery")
    return bearer(await create_token(app.db, "alice", "tests"))


async def _subscribe(app: Running, email: str, name: str | None = None) -> None:
    response = await app.client.post(
        SUBSCRIBE,
        json={"email": email, **({"name": name} if name else {})},
        headers={"Origin": "https://www.example.com"},
    )
    assert response.status_code == 202, response.text


async def test_every_change_arrives_signed_through_faults(
    hook_settings: Settings, smtp: SMTPServer
) -> None:
    # The receiver is not listening at first: those attempts are refused connections.
    receiver = Receiver(plan=faulty(seed=7, ok_share=0.3), port=free_port())
    await make_list(hook_settings)
    async with serve_app(hook_settings) as app:
        auth = await _token(app)
        created = await app.client.post(
            HOOKS,
            json={
                "url": receiver.url,
                "events": [
                    "subscription.pending",
                    "subscription.confirmed",
                    "subscription.unsubscribed",
                ],
                "description": "CRM – Köln",
            },
            headers=auth,
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        assert secret.startswith("whsec_")
        shown = await app.client.get(f"{HOOKS}/{created.json()['id']}", headers=auth)
        assert "secret" not in shown.json() and secret not in shown.text

        for i in range(4):
            await _subscribe(app, f"reader{i}@example.com", name="Zoë" if i == 0 else None)
        mails = sorted(await smtp.wait_for(4), key=lambda m: m.rcpt_tos)
        await asyncio.sleep(0.3)  # some attempts meet a closed port
        await receiver.start()
        try:
            for mail in mails[:3]:
                page = await app.client.post(app.local(mail.links["confirm"]))
                assert page.status_code == 303
            one_click = await app.client.post(
                app.local(mails[0].links["unsubscribe"]),
                data={"List-Unsubscribe": "One-Click"},
            )
            assert one_click.status_code == 200
            found = await receiver.wait_for(secret, 8)
        finally:
            await receiver.stop()
    assert types(found) == ["subscription.confirmed"] * 3 + ["subscription.pending"] * 4 + [
        "subscription.unsubscribed"
    ]
    [left] = payloads(found, "subscription.unsubscribed")
    assert left["data"]["method"] == "one-click"
    assert left["data"]["subscriber"] == {
        "id": left["data"]["subscriber"]["id"],
        "email": "reader0@example.com",
        "name": "Zoë",
        "attributes": {},
    }
    assert left["data"]["subscription"]["list"] == "daily"
    assert left["data"]["subscription"]["status"] == "unsubscribed"
    # Faults happened, and every retry of an event carried its id and the same body.
    answers = {a.answer for a in receiver.attempts}
    assert {"ok", "500", "hang", "drop"} <= answers, answers
    by_id: dict[str, set[bytes]] = {}
    for attempt in receiver.attempts:
        by_id.setdefault(attempt.msg_id, set()).add(attempt.body)
        attempt.verified(secret)  # every attempt is signed, the failed ones too
    assert all(len(bodies) == 1 for bodies in by_id.values())
    assert len(by_id) == 8
