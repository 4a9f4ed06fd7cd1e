"""Webhooks: every change arrives at a real receiver on loopback, signed (verified with the
`standardwebhooks` reference library), through 500s, hangs and dropped connections."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
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
    process_env,
    serve_app,
    sign_in,
    visible,
)

from service.auth.api_tokens import create_token
from service.auth.roles import SCOPES
from service.auth.users import create_user
from service.db import Database
from service.models import utcnow
from service.settings import Settings
from service.webhooks import endpoints
from service.webhooks.events import TEST, store

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
    return bearer(await create_token(app.db, "alice", "tests", scopes=SCOPES))


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
                "description": "CRM für Köln",
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


async def _endpoint(app: Running, auth: dict[str, str], url: str, **extra: Any) -> dict[str, Any]:
    created = await app.client.post(HOOKS, json={"url": url, **extra}, headers=auth)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


async def _deliveries(app: Running, auth: dict[str, str], endpoint_id: int) -> list[Any]:
    response = await app.client.get(f"{HOOKS}/{endpoint_id}/deliveries", headers=auth)
    assert response.status_code == 200
    items: list[Any] = response.json()["items"]
    return items


async def _until(check: Any, timeout: float = 90.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0.02)
    return result


async def test_failing_receiver_is_paused_and_gone_disables(
    hook_settings: Settings, smtp: SMTPServer
) -> None:
    answers = ["500"]
    settings = hook_settings.replace(webhook_pause_after=3)
    await make_list(settings)
    async with Receiver(plan=lambda n, tries: answers[0]) as receiver, serve_app(settings) as app:
        auth = await _token(app)
        hook = await _endpoint(app, auth, receiver.url)
        sent = await app.client.post(f"{HOOKS}/{hook['id']}/test", headers=auth)
        assert sent.status_code == 202

        async def paused() -> Any:
            found = (await app.client.get(f"{HOOKS}/{hook['id']}", headers=auth)).json()
            return found if found["status"] == "paused" else None

        found = await _until(paused)
        assert "after 3 failed attempts in a row (the last: HTTP 500)" in found["status_reason"]
        [delivery] = await _deliveries(app, auth, hook["id"])
        assert delivery["status"] == "queued" and delivery["response_status"] == 500
        assert delivery["attempts"] == 3
        tried = len(receiver.attempts)
        await asyncio.sleep(0.2)
        assert len(receiver.attempts) == tried  # nothing more while paused

        # Resumed, the waiting event goes out at once; 410 Gone disables the endpoint.
        answers[0] = "410"
        resumed = await app.client.post(f"{HOOKS}/{hook['id']}/resume", headers=auth)
        assert resumed.status_code == 200  # active (or, a moment later, disabled)

        async def disabled() -> Any:
            found = (await app.client.get(f"{HOOKS}/{hook['id']}", headers=auth)).json()
            return found if found["status"] == "disabled" else None

        found = await _until(disabled)
        assert "410 Gone" in found["status_reason"]
        [delivery] = await _deliveries(app, auth, hook["id"])
        assert delivery["status"] == "failed" and delivery["response_status"] == 410
        # A disabled endpoint is sent nothing more.
        await _subscribe(app, "late@example.com")
        await smtp.wait_for(1)
        assert len(await _deliveries(app, auth, hook["id"])) == 1


async def test_private_and_malformed_targets_are_refused(settings: Settings) -> None:
    await make_list(settings)
    async with serve_app(settings) as app:
        auth = await _token(app)
        for url, says in [
            ("http://127.0.0.1:9/hook", "public addresses only"),
            ("http://169.254.169.254/latest/meta-data", "public addresses only"),
            ("http://[::1]/hook", "public addresses only"),
            ("http://10.1.2.3/hook", "public addresses only"),
            ("ftp://example.com/hook", "must start with https://"),
            ("https://user:pw@example.com/hook", "user name or password"),
            ("https://example.com:99999/", "is not a URL"),
        ]:
            refused = await app.client.post(HOOKS, json={"url": url}, headers=auth)
            assert refused.status_code == 422, (url, refused.text)
            assert says in refused.json()["message"], refused.text
        for body, says in [
            ({"url": "https://h.invalid/h", "events": ["nope"]}, "Unknown event type 'nope'"),
            ({"url": "https://h.invalid/h", "events": "all"}, "events must be a list"),
            ({"url": "https://h.invalid/h", "lists": ["missing"]}, "no list 'missing'"),
            ({"url": 5}, "url is required"),
        ]:
            refused = await app.client.post(HOOKS, json=body, headers=auth)
            assert refused.status_code == 422, refused.text
            assert says in refused.json()["message"], refused.text
        wrong_type = await app.client.post(HOOKS, content=b"url=x", headers=auth)
        assert wrong_type.status_code == 415
        for path in (f"{HOOKS}/99", f"{HOOKS}/abc", f"{HOOKS}/99/deliveries"):
            assert (await app.client.get(path, headers=auth)).status_code == 404
        assert (await app.client.post(f"{HOOKS}/99/test", headers=auth)).status_code == 404
        assert (await app.client.post(f"{HOOKS}/1/explode", headers=auth)).status_code == 404
        # Webhooks send data elsewhere: a token needs the admin scope.
        plain = bearer(await create_token(app.db, "alice", "plain", scopes=["read", "write"]))
        refused = await app.client.get(HOOKS, headers=plain)
        assert refused.status_code == 403 and "'admin' scope" in refused.json()["message"]


async def test_targets_are_checked_again_at_delivery(
    hook_settings: Settings, smtp: SMTPServer
) -> None:
    """Saved while private targets were allowed; refused when they no longer are."""
    await make_list(hook_settings)
    async with Receiver() as receiver:
        async with serve_app(hook_settings) as app:
            auth = await _token(app)
            hook = await _endpoint(app, auth, receiver.url)
        strict = hook_settings.replace(webhook_allow_private=False)
        async with serve_app(strict) as app:
            auth = bearer(await create_token(app.db, "alice", "again", scopes=SCOPES))
            await app.client.post(f"{HOOKS}/{hook['id']}/test", headers=auth)

            async def attempted() -> Any:
                rows = await _deliveries(app, auth, hook["id"])
                return rows if rows and rows[0]["last_attempt_at"] else None

            [delivery] = await _until(attempted)
        assert "public addresses only" in delivery["response_body"]
        assert delivery["response_status"] is None
        assert receiver.attempts == []


async def test_rotation_test_event_and_redelivery(hook_settings: Settings) -> None:
    await make_list(hook_settings)
    async with Receiver() as receiver, serve_app(hook_settings) as app:
        auth = await _token(app)
        hook = await _endpoint(app, auth, receiver.url, events=["subscriber.erased"])
        old = hook["secret"]
        rotated = await app.client.post(f"{HOOKS}/{hook['id']}/rotate", headers=auth)
        new = rotated.json()["secret"]
        assert new != old and rotated.json()["rotating_until"]
        await app.client.post(f"{HOOKS}/{hook['id']}/test", headers=auth)
        [first] = (await receiver.wait_for(new, 1)).values()
        assert first["type"] == "webhook.test"
        # Both secrets sign during the rotation: a receiver with either one verifies.
        [attempt] = receiver.attempts
        assert attempt.verified(old) == attempt.verified(new)
        assert len(attempt.headers["webhook-signature"].split(" ")) == 2

        async def delivered() -> Any:
            rows = await _deliveries(app, auth, hook["id"])
            return rows if rows[0]["status"] == "delivered" else None

        [row] = await _until(delivered)
        assert row["response_status"] == 200 and row["response_body"] == "thanks"
        again = await app.client.post(
            f"{HOOKS}/{hook['id']}/deliveries/{row['id']}/redeliver", headers=auth
        )
        assert again.status_code == 202
        await _until(lambda: asyncio.sleep(0, len(receiver.attempts) == 2))
        assert receiver.attempts[1].msg_id == attempt.msg_id  # the same id: a repeat
        assert receiver.attempts[1].body == attempt.body
        missing = await app.client.post(
            f"{HOOKS}/{hook['id']}/deliveries/999/redeliver", headers=auth
        )
        assert missing.status_code == 404
        gone = await app.client.delete(f"{HOOKS}/{hook['id']}", headers=auth)
        assert gone.status_code == 204
        assert (await app.client.get(f"{HOOKS}/{hook['id']}", headers=auth)).status_code == 404


async def test_updates_and_erasure(hook_settings: Settings) -> None:
    """A name changed by an import is told; an erasure is told without personal data, and
    every stored event about the person is gone."""
    await make_list(hook_settings)
    async with Receiver() as receiver, serve_app(hook_settings) as app:
        auth = await _token(app)
        hook = await _endpoint(app, auth, receiver.url, lists=["daily"])
        imported = await app.client.post(
            "/api/v1/admin/lists/daily/imports",
            params={"mode": "confirmed", "reason": "moved from the old tool"},
            content=b"email,name,status\nmara@example.com,Mara,confirmed\n",
            headers={**auth, "Content-Type": "text/csv"},
        )
        assert imported.status_code == 200, imported.text
        renamed = await app.client.post(
            "/api/v1/admin/lists/daily/imports",
            params={"update_existing": "yes"},
            content="email,name,city\nmara@example.com,Mara Ünal,Köln\n".encode(),
            headers={**auth, "Content-Type": "text/csv"},
        )
        assert renamed.status_code == 200, renamed.text
        found = await receiver.wait_for(hook["secret"], 2)
        [confirmed] = payloads(found, "subscription.confirmed")
        assert confirmed["data"]["method"] == "import"
        [updated] = payloads(found, "subscriber.updated")
        person = updated["data"]["subscriber"]
        assert (person["name"], person["attributes"]["city"]) == ("Mara Ünal", "Köln")
        assert updated["data"]["lists"] == [{"list": "daily", "status": "confirmed"}]

        erased = await app.client.delete(f"/api/v1/admin/subscribers/{person['id']}", headers=auth)
        assert erased.status_code == 204
        found = await receiver.wait_for(hook["secret"], 3)
        [gone] = payloads(found, "subscriber.erased")
        assert gone["data"] == {"subscriber": {"id": person["id"]}, "lists": ["daily"]}
        async with app.db.read() as session:
            from service.models import WebhookEvent

            stored = [e.payload for e in await session.scalars(select(WebhookEvent))]
        assert [p["type"] for p in stored] == ["subscriber.erased"]
        assert "mara" not in str(stored).lower()


def _worker(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "service", "worker"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.scenario
async def test_kill_9_of_a_worker_mid_delivery_loses_nothing(
    settings: Settings, smtp: SMTPServer, tmp_path: Path
) -> None:
    """A `newsletter worker` is killed while its requests hang at the receiver; the next
    worker takes the leased deliveries over once the lease has run out, and every event
    arrives, with the id it had."""
    answers = ["hang"]
    await make_list(settings)
    db = Database.from_url(settings.database_url)
    async with Receiver(plan=lambda n, tries: answers[0]) as receiver:
        try:
            added = await endpoints.add(db, receiver.url, allow_private=True)
            async with db.write() as session:
                data = [(TEST, None, {"n": i}, [added.endpoint.id]) for i in range(30)]
                await store(session, data, utcnow())
        finally:
            await db.dispose()
        env = process_env(
            settings.database_url,
            smtp,
            NEWSLETTER_WEBHOOK_ALLOW_PRIVATE="true",
            NEWSLETTER_WEBHOOK_TIMEOUT="3s",
            NEWSLETTER_WORKER_LEASE="1s",  # the lease is the timeout and a second: 4 s
            NEWSLETTER_WORKER_CONCURRENCY="4",
        )
        with (tmp_path / "worker.log").open("wb") as log:
            first = _worker(env, log)
            try:
                await _until(lambda: asyncio.sleep(0, len(receiver.attempts) >= 4), 120)
                first.send_signal(signal.SIGKILL)  # four requests are out, unanswered
                first.wait()
            finally:
                if first.poll() is None:
                    first.kill()
            answers[0] = "ok"
            second = _worker(env, log)
            try:
                found = await receiver.wait_for(added.secret, 30, timeout=120)
            finally:
                second.terminate()
                second.wait(30)
    assert sorted(p["data"]["n"] for p in found.values()) == list(range(30))
    hung = {a.msg_id for a in receiver.attempts if a.answer == "hang"}
    assert len(hung) >= 4 and hung <= set(found)  # the cut-off ones came again, same id


@pytest.mark.scenario
def test_the_demo_shows_a_confirmed_signup_arriving_at_its_receiver(tmp_path: Path) -> None:
    """`newsletter demo --webhook-receiver`: a newcomer signs up, confirms, and sees the
    signed event arrive."""
    import os
    import re
    import time
    import urllib.request

    service, article, hooks = free_port(), free_port(), free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    environ["TMPDIR"] = str(tmp_path)
    environ["NEWSLETTER_MIN_FILL_TIME"] = "0"  # a script sends no form stamp
    command = [sys.executable, "-m", "service", "demo", "--port", str(service)]
    command += ["--article-port", str(article), "--webhook-receiver", str(hooks)]
    process = subprocess.Popen(
        command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{service}"

    def fetch(url: str, data: bytes | None = None, **headers: str) -> str:
        request = urllib.request.Request(url, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fetch(f"{base}/healthz")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        fetch(
            f"{base}/api/v1/lists/demo/subscriptions",
            json.dumps({"email": "newcomer@example.com", "name": "Nia"}).encode(),
            **{"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{article}"},
        )
        while not (found := re.findall(r'/dev/mail/(\d+)"', fetch(f"{base}/dev/mail"))):
            assert time.monotonic() < deadline, "no confirmation email"
            time.sleep(0.1)
        mail = fetch(f"{base}/dev/mail/{found[0]}")
        [token] = set(re.findall(r"/confirm/([A-Za-z0-9._-]+)", mail))
        fetch(f"{base}/confirm/{token}", b"")
        while "subscription.confirmed newcomer@example.com demo" not in (
            page := fetch(f"http://127.0.0.1:{hooks}/")
        ):
            assert time.monotonic() < deadline, page
            time.sleep(0.1)
        assert "✔ subscription.confirmed" in page
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert f"Webhooks go to http://127.0.0.1:{hooks}/hooks" in output
    assert "webhook verified: subscription.confirmed newcomer@example.com demo" in output
    assert "Traceback" not in output


async def test_admin_pages_manage_an_endpoint(hook_settings: Settings) -> None:
    """Add in the admin: the secret is shown once; test, see the delivery, pause, resume,
    rotate, remove; and /metrics counts the attempts."""
    await make_list(hook_settings)
    async with Receiver() as receiver, serve_app(hook_settings) as app:
        await create_user(app.db, "alice", "correct horse battery")
        session = await sign_in(app)
        listing = await app.client.get("/admin/webhooks", headers=session)
        assert listing.status_code == 200 and "No endpoints yet." in visible(listing)
        refused = await app.client.post(
            "/admin/webhooks",
            data={"url": "gopher://x", "events": ["subscription.confirmed"]},
            headers=session,
        )
        assert refused.status_code == 422 and "must start with https://" in visible(refused)
        added = await app.client.post(
            "/admin/webhooks",
            data={
                "url": receiver.url,
                "description": "Zoë's CRM",
                "events": ["subscription.confirmed", "subscriber.erased"],
                "lists": ["daily"],
            },
            headers=session,
        )
        assert added.status_code == 200
        [secret] = re.findall(r"whsec_[A-Za-z0-9+/=]+", added.text)
        [path] = set(re.findall(r'/admin/webhooks/\d+"', added.text))
        page_url = path.rstrip('"')
        page = await app.client.get(page_url, headers=session)
        assert secret not in page.text and "Zoë's CRM" in visible(page)

        tested = await app.client.post(page_url, data={"action": "test"}, headers=session)
        assert tested.status_code == 303
        await receiver.wait_for(secret, 1)

        async def shown() -> Any:
            page = await app.client.get(page_url, headers=session)
            return page if "HTTP 200" in visible(page) else None

        page = await _until(shown)
        assert "webhook.test" in visible(page) and "delivered" in visible(page)

        paused = await app.client.post(page_url, data={"action": "pause"}, headers=session)
        page = await app.client.get(paused.headers["location"], headers=session)
        assert "Paused: events wait until it is resumed." in visible(page)
        assert "Paused by admin alice" in visible(page)
        listing = await app.client.get("/admin/webhooks", headers=session)
        assert "paused" in visible(listing) and "Paused by admin alice" in visible(listing)
        resumed = await app.client.post(page_url, data={"action": "resume"}, headers=session)
        assert resumed.status_code == 303
        rotated = await app.client.post(page_url, data={"action": "rotate"}, headers=session)
        [new_secret] = re.findall(r"whsec_[A-Za-z0-9+/=]+", rotated.text)
        assert new_secret != secret and "The previous secret signs too" in visible(rotated)

        metrics = await app.client.get("/metrics")
        assert 'newsletter_webhook_attempts_total{result="delivered"} 1.0' in metrics.text
        assert 'newsletter_webhook_endpoints{status="active"} 1.0' in metrics.text

        removed = await app.client.post(page_url, data={"action": "remove"}, headers=session)
        assert removed.headers["location"] == "/admin/webhooks?done=removed"
        assert (await app.client.get(page_url, headers=session)).status_code == 404
        elsewhere = await app.client.post(
            "/admin/webhooks",
            data={"url": receiver.url},
            headers={"Cookie": session["Cookie"], "Sec-Fetch-Site": "cross-site"},
        )
        assert elsewhere.status_code == 403
