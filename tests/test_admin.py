"""The admin side: who gets in, what a cross-site form can do, and what editors see."""

from __future__ import annotations

import asyncio
import html
import io
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, update
from support import (
    PASSWORD,
    SAME_SITE,
    SUBSCRIBE,
    Running,
    SMTPServer,
    cli,
    make_list,
    serve_app,
    sign_in,
    signups_acted_on,
    visible,
)

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.keys import signing_key
from service.models import (
    AdminUser,
    ConsentRecord,
    MailingList,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from service.settings import Settings
from service.suppressions import AddressKeys, email_hash, suppressed
from service.web.assets import widget_asset

ADMIN_PAGES = [
    "/admin/",
    "/admin/lists",
    "/admin/lists/daily",
    "/admin/lists/daily/preview",
    "/admin/subscribers",
    "/admin/subscribers/1",
    "/admin/subscribers/1/data.json",
    "/admin/exports",
    "/admin/exports/download?list=daily&status=all",
]
ADMIN_POSTS = [
    "/admin/lists",
    "/admin/lists/daily",
    "/admin/subscribers/1/unsubscribe",
    "/admin/subscribers/1/erase",
    "/admin/imports",
]


async def test_nothing_without_signing_in(admin: Running) -> None:
    for path in ADMIN_PAGES:
        response = await admin.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login?next=")
    for path in ADMIN_POSTS:
        response = await admin.client.post(path, data={"name": "x"}, headers=SAME_SITE)
        assert response.status_code == 303, path
    forged = await admin.client.get("/admin/", headers={"Cookie": "__Host-nl_admin=forged"})
    assert forged.status_code == 303
    assert (await admin.client.get("/admin")).headers["location"] == "/admin/"


async def test_sign_in_cookie_and_sign_out(admin: Running) -> None:
    response = await admin.client.post(
        "/admin/login",
        data={"username": "alice", "password": PASSWORD, "next": "/admin/subscribers"},
        headers=SAME_SITE,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/subscribers"
    cookie = response.headers["set-cookie"]
    # https base URL: a __Host- cookie, Secure, HttpOnly, SameSite.
    assert cookie.startswith("__Host-nl_admin=")
    for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert flag.lower() in cookie.lower()
    headers = await sign_in(admin)
    dashboard = await admin.client.get("/admin/", headers=headers)
    assert dashboard.status_code == 200 and "Sign out alice" in dashboard.text
    assert dashboard.headers["cache-control"] == "no-store"

    out = await admin.client.post("/admin/logout", headers=headers)
    assert out.status_code == 303
    assert (await admin.client.get("/admin/", headers=headers)).status_code == 303, (
        "the session is gone on the server, not just the cookie"
    )


async def test_next_never_leaves_the_admin_side(admin: Running) -> None:
    for target in ("https://evil.example.net/", "//evil.example.net", "/\\evil.example.net"):
        response = await admin.client.post(
            "/admin/login",
            data={"username": "alice", "password": PASSWORD, "next": target},
            headers=SAME_SITE,
        )
        assert response.headers["location"] == "/admin/"


async def test_cross_site_posts_are_refused(admin: Running) -> None:
    headers = await sign_in(admin)
    cookie = {"Cookie": headers["Cookie"]}
    for extra in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example.net"},
        {},
    ):
        response = await admin.client.post(
            "/admin/lists",
            data={"slug": "evil", "name": "Evil", "language": "en"},
            headers={**cookie, **extra},
        )
        assert response.status_code == 403, extra
        assert "another site" in response.text
    assert (await admin.client.get("/admin/lists/evil", headers=headers)).status_code == 404
    own = await admin.client.post(
        "/admin/lists",
        data={"slug": "good", "name": "Good", "language": "en"},
        headers={**cookie, "Origin": "https://news.example.org"},
    )
    assert own.status_code == 303
    cross_login = await admin.client.post(
        "/admin/login",
        data={"username": "alice", "password": PASSWORD},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_login.status_code == 403 and "set-cookie" not in cross_login.headers


async def test_wrong_passwords_are_throttled_and_unknown_users_look_the_same(
    admin: Running,
) -> None:
    wrong = await admin.client.post(
        "/admin/login", data={"username": "alice", "password": "x"}, headers=SAME_SITE
    )
    unknown = await admin.client.post(
        "/admin/login", data={"username": "mallory", "password": "x"}, headers=SAME_SITE
    )
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong username or password." in wrong.text and "Wrong username or password." in (
        unknown.text
    )
    for _ in range(4):
        await admin.client.post(
            "/admin/login", data={"username": "alice", "password": "x"}, headers=SAME_SITE
        )
    blocked = await admin.client.post(
        "/admin/login", data={"username": "alice", "password": PASSWORD}, headers=SAME_SITE
    )
    assert blocked.status_code == 429, "even the right password waits"
    assert "Too many failed sign-ins" in blocked.text
    assert int(blocked.headers["retry-after"]) > 0
    assert "set-cookie" not in blocked.headers


async def test_a_stranger_cannot_lock_the_owner_out(settings: Settings) -> None:
    await make_list(settings)
    proxied = settings.replace(trusted_proxies=("127.0.0.1/32",))
    async with serve_app(proxied) as app:
        await create_user(app.db, "alice", PASSWORD)
        guesser = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(6):
            await app.client.post(
                "/admin/login",
                data={"username": "alice", "password": "not it at all"},
                headers={**SAME_SITE, **guesser},
            )
        still = await app.client.post(
            "/admin/login",
            data={"username": "alice", "password": PASSWORD},
            headers={**SAME_SITE, **guesser},
        )
        assert still.status_code == 429, "the guesser stays throttled, even when right"
        assert "set-cookie" not in still.headers
        headers = await sign_in(app, ip_headers={"X-Forwarded-For": "198.51.100.20"})
        assert (await app.client.get("/admin/", headers=headers)).status_code == 200
        other = await app.client.post(
            "/admin/login",
            data={"username": "bob", "password": "not it at all"},
            headers={**SAME_SITE, **guesser},
        )
        assert other.status_code == 401, "another account from that address: not yet"
        for i in range(20):
            await app.client.post(
                "/admin/login",
                data={"username": f"user{i}", "password": "y"},
                headers={**SAME_SITE, "X-Forwarded-For": "192.0.2.9"},
            )
        spray = await app.client.post(
            "/admin/login",
            data={"username": "carol", "password": "y"},
            headers={**SAME_SITE, "X-Forwarded-For": "192.0.2.9"},
        )
        assert spray.status_code == 429, "the per-address limit holds across accounts"


async def test_failed_sign_ins_are_logged_without_the_password(
    admin: Running, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hunter2-the-secret-guess"
    hostile = "alice\n2026-01-01 INFO forged line\x1b[31m" + "x" * 300
    with caplog.at_level(logging.INFO, "service"):
        for name in ("alice", hostile):
            response = await admin.client.post(
                "/admin/login", data={"username": name, "password": secret}, headers=SAME_SITE
            )
            assert response.status_code == 401
        await sign_in(admin)
    failed = [r for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(failed) == 2, "one line per failure, none for the success"
    assert "'alice' from 127.0.0.1" in failed[0].getMessage()
    line = failed[1].getMessage()
    assert "forged line" in line and "\n" not in line and "\x1b" not in line
    assert len(line) < 150, "a long name is cut short"
    assert secret not in caplog.text and PASSWORD not in caplog.text


async def test_a_new_password_ends_every_session_and_tokens_on_request(
    admin: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, phone = await sign_in(admin), await sign_in(admin)
    auth = {"Authorization": f"Bearer {await create_token(admin.db, 'alice', 'export')}"}
    new_password = "a fresh and long passphrase"
    monkeypatch.setattr("sys.stdin", io.StringIO(new_password + "\n"))
    changed = await cli(["admin", "password", "alice"], admin.settings)
    assert changed.returncode == 0, changed
    assert b"2 signed-in session(s) ended" in changed.stdout
    assert b"--revoke-tokens" in changed.stderr, "the command says the tokens are kept"
    for headers in (laptop, phone):
        assert (await admin.client.get("/admin/", headers=headers)).status_code == 303
    assert (await admin.client.get("/api/v1/admin/lists", headers=auth)).status_code == 200
    headers = await sign_in(admin, password=new_password)
    assert (await admin.client.get("/admin/", headers=headers)).status_code == 200

    monkeypatch.setattr("sys.stdin", io.StringIO("yet another long passphrase\n"))
    revoked = await cli(["admin", "password", "alice", "--revoke-tokens"], admin.settings)
    assert revoked.returncode == 0, revoked
    assert b"1 API token(s) revoked" in revoked.stdout
    assert (await admin.client.get("/api/v1/admin/lists", headers=auth)).status_code == 401
    assert (await admin.client.get("/admin/", headers=headers)).status_code == 303


async def test_passwords_easy_to_guess_are_refused(
    admin: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    for weak in ("aaaaaaaaaa", "password123", "1234567890", "qwertyuiop", "bobbobbob1"):
        with pytest.raises(ValueError, match="too easy to guess"):
            await create_user(admin.db, "bobbob", weak)
    with pytest.raises(ValueError, match="at least 10 characters"):
        await create_user(admin.db, "bob", "Xq7#")
    monkeypatch.setattr("sys.stdin", io.StringIO("password123\n"))
    refused = await cli(["admin", "password", "alice"], admin.settings)
    assert refused.returncode == 1
    assert b"error: this password is too easy to guess" in refused.stderr
    await sign_in(admin)  # the old password still stands
    await create_user(admin.db, "bob", "plum kettle orbit sunday")


async def test_idle_sessions_end(settings: Settings) -> None:
    await make_list(settings)
    async with serve_app(settings.replace(admin_idle_timeout=0.5)) as app:
        await create_user(app.db, "alice", PASSWORD)
        headers = await sign_in(app)
        assert (await app.client.get("/admin/", headers=headers)).status_code == 200
        await asyncio.sleep(0.7)
        assert (await app.client.get("/admin/", headers=headers)).status_code == 303


async def test_old_password_hashes_are_upgraded_on_sign_in(admin: Running) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with admin.db.write() as session:
        await session.execute(update(AdminUser).values(password_hash=weak))
    await sign_in(admin)
    async with admin.db.read() as session:
        stored = await session.scalar(select(AdminUser.password_hash))
    assert stored != weak and "m=65536" in (stored or "")


async def test_dashboard_lists_and_subscribers(admin: Running, smtp: SMTPServer) -> None:
    headers = await sign_in(admin)
    for i in range(3):
        await admin.client.post(SUBSCRIBE, json={"email": f"r{i}@example.com", "name": f"R {i}"})
    await smtp.wait_for(3)
    dashboard = await admin.client.get("/admin/", headers=headers)
    assert "<svg" in dashboard.text and "Signups and confirmations" in dashboard.text
    assert re.search(r"Pending</div><div class=\"stat\">3<", dashboard.text)

    created = await admin.client.post(
        "/admin/lists",
        data={
            "slug": "weekly",
            "name": "The Weekly",
            "language": "de",
            "origins": "https://www.example.com\nhttps://blog.example.com",
        },
        headers=headers,
    )
    assert created.headers["location"] == "/admin/lists/weekly?done=created"
    edit = await admin.client.get("/admin/lists/weekly", headers=headers)
    version = widget_asset().version
    assert (
        f'<script src="https://news.example.org/widget.js?v={version}" data-list="weekly" async>'
    ) in visible(edit)
    saved = await admin.client.post(
        "/admin/lists/weekly",
        headers=headers,
        data={
            "name": "The Weekly",
            "language": "de",
            "origins": "https://www.example.com",
            "double_opt_in": "true",
            "title": "Jede Woche",
            "accent": "#aa0000",
            "position": "bottom-left",
            "theme": "dark",
            "trigger": "scroll",
            "delay": "5",
            "scroll": "40",
            "dismissDays": "7",
            "nameField": ["false", "true"],
            "consentCheckbox": "false",
            "privacyUrl": "",
        },
    )
    assert saved.status_code == 303
    config = (await admin.client.get("/api/v1/lists/weekly/widget")).json()["settings"]
    assert (config["title"], config["accent"], config["position"], config["nameField"]) == (
        "Jede Woche",
        "#aa0000",
        "bottom-left",
        True,
    )
    bad = await admin.client.post(
        "/admin/lists/weekly",
        headers=headers,
        data={"name": "The Weekly", "accent": "red;}</style>"},
    )
    assert bad.status_code == 422 and "hex colour" in bad.text

    found = await admin.client.get("/admin/subscribers?q=r1%40", headers=headers)
    assert "r1@example.com" in found.text and "r2@example.com" not in found.text
    filtered = await admin.client.get(
        "/admin/subscribers?list=daily&status=confirmed", headers=headers
    )
    assert "No subscribers match." in filtered.text


async def test_keyset_pages(admin: Running) -> None:
    headers = await sign_in(admin)
    async with admin.db.write() as session:
        session.add_all(
            Subscriber(email=f"p{i:03d}@example.com", attributes={}) for i in range(120)
        )
    seen: list[str] = []
    url = "/admin/subscribers?q=example"
    pages = 0
    while url:
        response = await admin.client.get(url, headers=headers)
        seen += re.findall(r">(p\d{3}@example\.com)<", response.text)
        found = re.search(r'href="([^"]+)" rel="next"', response.text)
        url = found.group(1).replace("&amp;", "&") if found else ""
        pages += 1
    assert pages == 3
    assert seen == [f"p{i:03d}@example.com" for i in reversed(range(120))]


async def test_person_record_unsubscribe_export_and_erasure(
    admin: Running, smtp: SMTPServer
) -> None:
    headers = await sign_in(admin)
    await admin.client.post(
        SUBSCRIBE,
        json={"email": "gone@example.com", "name": "Gone", "page_url": "https://www.example.com/x"},
        headers={"User-Agent": "UA/1"},
    )
    await smtp.wait_for(1)
    async with admin.db.read() as session:
        subscriber_id = await session.scalar(select(Subscriber.id))
        subscription_id = await session.scalar(select(Subscription.id))
    detail = await admin.client.get(f"/admin/subscribers/{subscriber_id}", headers=headers)
    assert "Consent history" in detail.text and "https://www.example.com/x" in detail.text

    data = await admin.client.get(f"/admin/subscribers/{subscriber_id}/data.json", headers=headers)
    assert "attachment" in data.headers["content-disposition"]
    person = json.loads(data.content)
    assert person["email"] == "gone@example.com"
    assert person["consent_records"][0]["user_agent"] == "UA/1"
    assert person["emails"][0]["kind"] == "confirm"

    done = await admin.client.post(
        f"/admin/subscribers/{subscriber_id}/unsubscribe",
        data={"subscription": str(subscription_id)},
        headers=headers,
    )
    assert done.status_code == 303
    async with admin.db.read() as session:
        assert await session.scalar(select(Subscription.status)) == (
            SubscriptionStatus.UNSUBSCRIBED
        )

    erase = f"/admin/subscribers/{subscriber_id}/erase"
    asked = await admin.client.post(erase, headers=headers)
    assert asked.status_code == 200, "the button asks first"
    assert "Delete all data of gone@example.com?" in asked.text
    assert 'name="confirm" value="yes"' in asked.text
    async with admin.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Subscriber)) == 1
    erased = await admin.client.post(erase, data={"confirm": "yes"}, headers=headers)
    assert erased.status_code == 200
    assert "All data of gone@example.com was deleted." in erased.text
    again = await admin.client.post(erase, data={"confirm": "yes"}, headers=headers)
    assert again.status_code == 200 and "already deleted" in again.text  # a reload
    assert "gone@example.com" not in again.text
    async with admin.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert await session.scalar(select(func.count()).select_from(ConsentRecord)) == 0
        tombstones = set(await session.scalars(select(Suppression.email_hash)))
    keys = AddressKeys(await signing_key(admin.settings, admin.db))
    assert keys.tombstone("gone@example.com") in tombstones
    missing = await admin.client.get(f"/admin/subscribers/{subscriber_id}", headers=headers)
    assert missing.status_code == 404


async def test_an_admins_unsubscribe_is_the_readers_opt_out(
    admin: Running, smtp: SMTPServer
) -> None:
    """Same transition as the reader's link: the pending link dies, a repeat is harmless."""
    headers = await sign_in(admin)
    await admin.client.post(SUBSCRIBE, json={"email": "phoned@example.com"})
    (mail,) = await smtp.wait_for(1)
    async with admin.db.read() as session:
        subscriber_id, subscription_id, nonce = (
            await session.execute(
                select(Subscription.subscriber_id, Subscription.id, Subscription.confirm_nonce)
            )
        ).one()
    for _ in range(2):  # a second click changes nothing and shows no error
        done = await admin.client.post(
            f"/admin/subscribers/{subscriber_id}/unsubscribe",
            data={"subscription": str(subscription_id)},
            headers=headers,
        )
        assert done.status_code == 303
    async with admin.db.read() as session:
        sub = await session.get(Subscription, subscription_id)
        assert sub is not None and sub.status == SubscriptionStatus.UNSUBSCRIBED
        assert sub.confirm_nonce != nonce, "the nonce is rotated whoever unsubscribes"
        records = (await session.scalars(select(ConsentRecord).order_by(ConsentRecord.id))).all()
    assert [(str(r.action), r.method) for r in records] == [
        ("subscribe", "form"),
        ("unsubscribe", "admin"),
    ]
    assert records[1].wording == "Unsubscribed by admin alice."
    # The confirmation email that was already sent cannot undo the opt-out: its link says
    # so, and its button only starts a new double opt-in (the person asking again).
    stale = admin.local(mail.links["confirm"])
    offer = await admin.client.get(stale)
    assert offer.status_code == 200 and "You unsubscribed" in offer.text
    again = await admin.client.post(stale)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/subscribe/daily/thanks")
    await signups_acted_on(admin.db)
    async with admin.db.read() as session:
        assert await session.scalar(select(Subscription.status)) != SubscriptionStatus.CONFIRMED


async def test_an_address_that_cannot_be_mailed_shows_as_failed_everywhere(
    admin: Running, smtp: SMTPServer
) -> None:
    """A permanent failure is told to the editor: admin list, status filter, person page,
    export and metrics all say "failed", not "pending"."""
    smtp.fail_next("550 5.1.1 no such user here")
    assert (
        await admin.client.post(SUBSCRIBE, json={"email": "ghost@example.com"})
    ).status_code == 202
    for _ in range(600):  # the 550 goes to ghost's message: the other is sent after it
        if smtp.handler.attempted_ids:
            break
        await asyncio.sleep(0.05)
    assert (
        await admin.client.post(SUBSCRIBE, json={"email": "fine@example.com"})
    ).status_code == 202
    await smtp.wait_for(1)
    session = await sign_in(admin)
    for _ in range(200):  # the worker marks the failure after the 550
        listing = await admin.client.get("/admin/subscribers?status=failed", headers=session)
        if "ghost@example.com" in listing.text:
            break
        await asyncio.sleep(0.05)
    assert "ghost@example.com" in listing.text and "fine@example.com" not in listing.text
    assert "daily: failed" in visible(listing)
    everyone = await admin.client.get("/admin/subscribers", headers=session)
    assert "daily: failed" in visible(everyone) and "daily: pending" in visible(everyone)
    person = await admin.client.get("/admin/subscribers?q=ghost", headers=session)
    ghost_id = re.search(r'/admin/subscribers/(\d+)"', person.text)
    assert ghost_id
    record = await admin.client.get(f"/admin/subscribers/{ghost_id[1]}", headers=session)
    assert '<span class="badge failed">failed</span>' in record.text
    assert "550 5.1.1 no such user here" in visible(record)
    export = await admin.client.get(
        "/admin/exports/download?list=daily&format=csv&status=all", headers=session
    )
    rows = {line.split(",")[0]: line.split(",")[3] for line in export.text.splitlines()[1:]}
    assert rows == {"ghost@example.com": "failed", "fine@example.com": "pending"}
    metrics = (await admin.client.get("/metrics")).text
    assert 'newsletter_send_attempts_total{result="failed"} 1.0' in metrics


async def test_an_erased_inbox_stays_suppressed_under_every_spelling(
    admin: Running, smtp: SMTPServer
) -> None:
    """The tombstone is a keyed hash of the canonical inbox; old exact hashes still count."""
    headers = await sign_in(admin)
    await admin.client.post(SUBSCRIBE, json={"email": "name@web.de"})
    await smtp.wait_for(1)
    async with admin.db.write() as session:
        subscriber_id = await session.scalar(select(Subscriber.id))
        # a tombstone written before keyed ones: an unsalted hash of the exact address
        session.add(Suppression(email_hash=email_hash("old@example.com"), reason="erased"))
    erased = await admin.client.post(
        f"/admin/subscribers/{subscriber_id}/erase", data={"confirm": "yes"}, headers=headers
    )
    assert "All data of name@web.de was deleted." in erased.text
    keys = AddressKeys(await signing_key(admin.settings, admin.db))
    asked = ["name+news@web.de", "Name@Web.DE", "name@web.de", "old@example.com", "other@web.de"]
    async with admin.db.read() as session:
        found = await suppressed(session, keys, asked)
        kept = set(await session.scalars(select(Suppression.email_hash)))
    assert found == {"name+news@web.de", "Name@Web.DE", "name@web.de", "old@example.com"}
    assert keys.tombstone("name+news@web.de") in kept
    assert not any("web.de" in k for k in kept)
    other = AddressKeys("another key, also long enough to sign links")
    assert other.tombstone("name@web.de") != keys.tombstone("name@web.de"), "keyed"
    # An import cannot bring the inbox back under another spelling.
    token = await create_token(admin.db, "alice", "tests")
    imported = await admin.client.post(
        "/api/v1/admin/lists/daily/imports",
        params={"confirmed": "true", "reason": "moving tools"},
        content=b"email\r\nname+news@web.de\r\nfresh@example.com\r\n",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["suppressed"] == 1
    async with admin.db.read() as session:
        emails = set(await session.scalars(select(Subscriber.email)))
    assert emails == {"fresh@example.com"}


def _text(response: httpx.Response) -> str:
    """A page's text without its tags, each run of white space one space."""
    body = re.sub(r"<style.*?</style>|<script.*?</script>", " ", response.text, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


async def _seed(admin: Running, people: list[dict[str, Any]]) -> dict[str, int]:
    """Subscribers with subscriptions written directly: each entry has ``email``, and
    optionally ``name``, ``created_at``, ``subs`` (list slug, status, subscribed_at) and
    ``failed`` (the latest email to each of their subscriptions failed)."""
    ids: dict[str, int] = {}
    async with admin.db.write() as session:
        list_ids = dict((await session.execute(select(MailingList.slug, MailingList.id))).all())
        for person in people:
            extra = {"created_at": person["created_at"]} if "created_at" in person else {}
            subscriber = Subscriber(
                email=person["email"], name=person.get("name"), attributes={}, **extra
            )
            session.add(subscriber)
            await session.flush()
            ids[str(person["email"])] = subscriber.id
            for slug, status, at in person.get("subs", []):
                sub = Subscription(
                    list_id=list_ids[slug],
                    subscriber_id=subscriber.id,
                    status=SubscriptionStatus(status),
                    confirm_nonce="n",
                    subscribed_at=at,
                )
                session.add(sub)
                await session.flush()
                if person.get("failed"):
                    session.add(
                        OutboxMessage(
                            template="confirm",
                            to_address=str(person["email"]),
                            subscription_id=sub.id,
                            message_id=f"<{sub.id}@test>",
                            status=OutboxStatus.FAILED,
                        )
                    )
    return ids


async def test_search_takes_underscore_and_percent_literally(admin: Running) -> None:
    headers = await sign_in(admin)
    await _seed(
        admin,
        [
            {"email": "first_last@example.com"},
            {"email": "firstlast@example.com"},
            {"email": "plain@example.com", "name": "Plain"},
            {"email": "sure@example.com", "name": "100% Sure"},
        ],
    )
    underscore = _text(await admin.client.get("/admin/subscribers?q=_", headers=headers))
    assert "first_last@example.com" in underscore
    assert "firstlast@example.com" not in underscore and "plain@" not in underscore
    percent = _text(await admin.client.get("/admin/subscribers?q=%25", headers=headers))
    assert "sure@example.com" in percent
    assert "plain@" not in percent and "first_last@" not in percent
    backslash = _text(await admin.client.get("/admin/subscribers?q=%5C", headers=headers))
    assert "No subscribers match." in backslash


async def test_slug_and_name_inputs_are_text_fields(admin: Running) -> None:
    """The admin style sheet styles ``input[type=text]``: an input without a type is
    missed."""
    headers = await sign_in(admin)
    lists = (await admin.client.get("/admin/lists", headers=headers)).text
    assert '<input type="text" id="slug" name="slug"' in lists
    assert '<input type="text" id="name" name="name"' in lists
    editor = (await admin.client.get("/admin/lists/daily", headers=headers)).text
    assert '<input type="text" id="name" name="name"' in editor
    for page in (lists, editor):
        assert not re.search(r"<input (?![^>]*\btype=)", page)


async def test_the_subscribers_date_is_the_one_the_date_filter_reads(admin: Running) -> None:
    await make_list(admin.settings, "weekly", name="The Weekly")
    headers = await sign_in(admin)
    await _seed(
        admin,
        [
            {
                "email": "old@example.com",
                "created_at": datetime(2020, 1, 2, 3, 4, tzinfo=UTC),
                "subs": [
                    ("daily", "confirmed", datetime(2024, 5, 6, 7, 8, tzinfo=UTC)),
                    ("weekly", "confirmed", datetime(2024, 3, 1, 9, 0, tzinfo=UTC)),
                ],
            },
        ],
    )
    everyone = _text(await admin.client.get("/admin/subscribers", headers=headers))
    assert "Subscribed (UTC)" in everyone and "Since (UTC)" not in everyone
    assert "2024-03-01 09:00" in everyone and "2020-01-02" not in everyone
    in_may = _text(
        await admin.client.get(
            "/admin/subscribers?since=2024-05-01&until=2024-05-31", headers=headers
        )
    )
    assert "old@example.com" in in_may and "2024-05-06 07:08" in in_may
    assert "2024-03-01" not in in_may
    daily = _text(await admin.client.get("/admin/subscribers?list=daily", headers=headers))
    assert "2024-05-06 07:08" in daily


async def test_pages_say_how_many_people_match_and_where_the_page_is(admin: Running) -> None:
    headers = await sign_in(admin)
    async with admin.db.write() as session:
        session.add_all(
            Subscriber(email=f"p{i:04d}@example.com", attributes={}) for i in range(1234)
        )
        session.add(Subscriber(email="other@example.org", attributes={}))
    first = await admin.client.get("/admin/subscribers?q=example.com", headers=headers)
    assert "1\N{EN DASH}50 of 1,234 people" in _text(first)
    found = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert found
    second = await admin.client.get(found[1].replace("&amp;", "&"), headers=headers)
    assert "51\N{EN DASH}100 of 1,234 people" in _text(second)
    one = await admin.client.get("/admin/subscribers?q=other", headers=headers)
    assert "1\N{EN DASH}1 of 1 person" in _text(one)


async def test_the_dashboard_counts_people_not_subscriptions(admin: Running) -> None:
    await make_list(admin.settings, "weekly", name="The Weekly")
    headers = await sign_in(admin)
    now = datetime(2024, 1, 1, tzinfo=UTC)
    both = [("daily", "confirmed", now), ("weekly", "confirmed", now)]
    await _seed(
        admin,
        [{"email": f"c{i}@example.com", "subs": both} for i in range(1001)]
        + [
            {"email": "mixed@example.com", "subs": [("daily", "unsubscribed", now)]},
            {"email": "bounced@example.com", "subs": both[:1], "failed": True},
            {"email": "pending@example.com", "subs": [("weekly", "pending", now)]},
        ],
    )
    page = _text(await admin.client.get("/admin/", headers=headers))
    stat = re.compile(r"(People|Confirmed|Pending|Unsubscribed|Failed addresses) ([\d,]+)")
    assert dict(stat.findall(page)[:5]) == {
        "People": "1,004",
        "Confirmed": "1,002",
        "Pending": "1",
        "Unsubscribed": "1",
        "Failed addresses": "1",
    }
    # per list, subscriptions as they are
    assert re.search(r"daily 1,002 0 1\b", page)
    assert re.search(r"weekly 1,001 1 0\b", page)


async def test_consent_history_keeps_list_slugs_whole(admin: Running, smtp: SMTPServer) -> None:
    """Table cells break long values anywhere; the slug and time cells must not break."""
    await admin.client.post(SUBSCRIBE, json={"email": "reader@example.com"})
    await smtp.wait_for(1)
    headers = await sign_in(admin)
    listing = await admin.client.get("/admin/subscribers?q=reader", headers=headers)
    person = re.search(r'/admin/subscribers/(\d+)"', listing.text)
    assert person
    record = (await admin.client.get(f"/admin/subscribers/{person[1]}", headers=headers)).text
    assert re.search(r"td\.nowrap \{[^}]*white-space:nowrap", record)
    history = record.split("Consent history", 1)[1].split("</table>", 1)[0]
    assert '<td class="nowrap">daily</td>' in history
