"""The whole double opt-in flow over real HTTP and real SMTP, as a reader lives it."""

from __future__ import annotations

import asyncio
import re
from email.headerregistry import Address
from email.utils import parsedate_to_datetime

from sqlalchemy import select
from support import (
    PUBLIC_URL,
    SUBSCRIBE,
    Running,
    SMTPServer,
    make_list,
    serve_app,
    visible,
)

from service.models import ConsentRecord, Subscription, SubscriptionStatus
from service.settings import Settings


async def status_of(app: Running, email: str) -> SubscriptionStatus:
    from service.models import Subscriber

    async with app.db.read() as session:
        status = await session.scalar(
            select(Subscription.status)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email == email)
        )
    assert status is not None
    return status


async def test_subscribe_confirm_unsubscribe(app: Running, smtp: SMTPServer) -> None:
    response = await app.client.post(
        SUBSCRIBE,
        json={
            "email": "Reader@Example.COM",
            "name": "Ann",
            "page_url": "https://www.example.com/a/1",
        },
        headers={"Origin": "https://www.example.com", "User-Agent": "TestBrowser/1.0"},
    )
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert response.headers["access-control-allow-origin"] == "https://www.example.com"

    [mail] = await smtp.wait_for(1)
    message = mail.message
    assert mail.rcpt_tos == ["reader@example.com"]
    assert mail.mail_from == "news@example.com"

    # Headers: sender with its UTF-8 name, list headers, RFC 8058 one-click.
    sender = message["From"].addresses[0]
    assert isinstance(sender, Address)
    assert (sender.display_name, sender.addr_spec) == ("Zeitung Müller", "news@example.com")
    assert b"=?utf-8?" in mail.data.split(b"\r\n\r\n", 1)[0]  # encoded, not raw 8-bit
    assert message["To"] == "reader@example.com"
    assert message["Subject"] == "Confirm your subscription to Frühstücks-Briefing"
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", message["Message-ID"])
    assert message["List-Id"] == "Frühstücks-Briefing <daily.news.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail.links
    assert message["List-Unsubscribe"] == f"<{link['unsubscribe']}>"
    assert link["unsubscribe"].startswith(f"{PUBLIC_URL}/unsubscribe/")
    assert link["confirm"].startswith(f"{PUBLIC_URL}/confirm/")
    # The raw header is one unfolded line that a mail provider can read.
    assert f"List-Unsubscribe: <{link['unsubscribe']}>".encode() in mail.data

    # Multipart text + HTML; the HTML carries the same links and a visible unsubscribe link.
    assert message.get_content_type() == "multipart/alternative"
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert f'href="{link["confirm"]}"' in html
    assert f'href="{link["unsubscribe"]}"' in html and ">Unsubscribe</a>" in html

    # The footer names the site the reader signed up on, not the service's own host.
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    assert "entered in the signup form of Frühstücks-Briefing (www.example.com)" in (
        " ".join(text.get_content().split())
    )
    assert "news.example.org)" not in text.get_content()

    # Nothing the subscriber typed appears in the email (the address is only in To).
    assert b"Ann" not in mail.data
    assert "Ann" not in html

    # GET shows a page with a button, and changes nothing (mail scanners fetch links).
    page = await app.client.get(app.local(link["confirm"]))
    assert page.status_code == 200
    assert '<form method="post">' in page.text and "Yes, subscribe me" in page.text
    assert "<script" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert await status_of(app, "reader@example.com") == SubscriptionStatus.PENDING

    # POST confirms, and answers 303 back to the link: a reload never posts again.
    confirm_path = app.local(link["confirm"])
    done = await app.client.post(confirm_path, headers={"User-Agent": "Phone/2"})
    assert done.status_code == 303 and done.headers["location"] == confirm_path
    shown = await app.client.get(done.headers["location"])
    assert shown.status_code == 200
    assert "You're subscribed" in visible(shown) and "Frühstücks-Briefing" in visible(shown)
    assert "<form" not in shown.text
    assert await status_of(app, "reader@example.com") == SubscriptionStatus.CONFIRMED

    # A harmless repeat (the browser re-posts, a second tab, the email opened again later)
    # shows where things stand, never an error, and confirms nothing twice.
    again = await app.client.post(confirm_path)
    assert again.status_code == 303 and again.headers["location"] == confirm_path
    later = await app.client.get(confirm_path)
    assert later.status_code == 200 and "You're subscribed" in visible(later)
    assert await status_of(app, "reader@example.com") == SubscriptionStatus.CONFIRMED

    # RFC 8058 one-click POST, as a mail provider sends it: no cookies, 200, no redirect.
    one_click = await app.client.post(
        app.local(link["unsubscribe"]),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    assert "set-cookie" not in one_click.headers
    assert await status_of(app, "reader@example.com") == SubscriptionStatus.UNSUBSCRIBED

    # The old confirmation link now says so truthfully, and offers the way back.
    after = await app.client.get(confirm_path)
    assert after.status_code == 200
    assert "You unsubscribed" in visible(after) and "Subscribe again" in visible(after)
    assert "You're subscribed" not in visible(after)

    # Consent: who, when, from where, with which words, for each step.
    async with app.db.read() as session:
        records = (await session.scalars(select(ConsentRecord).order_by(ConsentRecord.id))).all()
    assert [r.action for r in records] == ["subscribe", "confirm", "unsubscribe"]
    subscribe, confirm, unsubscribe = records
    assert subscribe.ip_address == "127.0.0.1"
    assert subscribe.user_agent == "TestBrowser/1.0"
    assert subscribe.page_url == "https://www.example.com/a/1"
    assert "Frühstücks-Briefing" in subscribe.wording
    assert confirm.user_agent == "Phone/2"
    assert "Yes, subscribe me" in confirm.wording
    assert unsubscribe.method == "one-click"


async def test_unsubscribe_page_and_multipart_one_click(app: Running, smtp: SMTPServer) -> None:
    await app.client.post(SUBSCRIBE, data={"email": "b@example.com"})
    [mail] = await smtp.wait_for(1)
    url = app.local(mail.links["unsubscribe"])

    page = await app.client.get(url)
    assert page.status_code == 200 and "Unsubscribe" in page.text
    assert "b@example.com" in page.text
    assert await status_of(app, "b@example.com") == SubscriptionStatus.PENDING

    # Multipart one-click body, twice: both 200, the second changes nothing.
    for _ in range(2):
        response = await app.client.post(url, files={"List-Unsubscribe": (None, "One-Click")})
        assert response.status_code == 200
        assert "You're unsubscribed" in visible(response)
    assert await status_of(app, "b@example.com") == SubscriptionStatus.UNSUBSCRIBED
    async with app.db.read() as session:
        actions = (await session.scalars(select(ConsentRecord.action))).all()
    assert actions.count("unsubscribe") == 1

    # The page now says so, and offers no button.
    page = await app.client.get(url)
    assert "You're unsubscribed" in visible(page) and "<form" not in page.text


async def test_resubscribe_after_unsubscribe_starts_double_opt_in_again(
    app: Running, smtp: SMTPServer
) -> None:
    await app.client.post(SUBSCRIBE, json={"email": "c@example.com"})
    [first] = await smtp.wait_for(1)
    await app.client.post(app.local(first.links["confirm"]))
    await app.client.post(app.local(first.links["unsubscribe"]))
    assert await status_of(app, "c@example.com") == SubscriptionStatus.UNSUBSCRIBED

    response = await app.client.post(SUBSCRIBE, json={"email": "c@example.com"})
    assert response.status_code == 202
    _, second = await smtp.wait_for(2)
    assert await status_of(app, "c@example.com") == SubscriptionStatus.PENDING
    # The old confirmation link cannot confirm the new signup: it points to the new email,
    # without an error; the new one confirms.
    old = await app.client.post(app.local(first.links["confirm"]))
    assert old.status_code == 200 and "Please use the newest email" in visible(old)
    assert await status_of(app, "c@example.com") == SubscriptionStatus.PENDING
    assert (await app.client.post(app.local(second.links["confirm"]))).status_code == 303
    assert await status_of(app, "c@example.com") == SubscriptionStatus.CONFIRMED
    # Once confirmed, either link shows so.
    for mail in (first, second):
        shown = await app.client.get(app.local(mail.links["confirm"]))
        assert shown.status_code == 200 and "You're subscribed" in visible(shown)


async def test_pending_resubscribe_resends_at_most_once_per_interval(
    app: Running, smtp: SMTPServer
) -> None:
    for _ in range(3):
        response = await app.client.post(SUBSCRIBE, json={"email": "d@example.com"})
        assert response.status_code == 202
    await smtp.wait_for(1)
    # Let the worker go idle, then check nothing more was queued.
    async with app.db.read() as session:
        from service.models import OutboxMessage

        rows = (await session.scalars(select(OutboxMessage))).all()
    assert len(rows) == 1
    assert len(smtp.received) == 1


async def test_html_form_post_gets_a_result_page(app: Running, smtp: SMTPServer) -> None:
    response = await app.client.post(
        SUBSCRIBE,
        data={"email": "e@example.com"},
        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
    )
    assert response.status_code == 202
    assert response.headers["content-type"].startswith("text/html")
    assert "check your inbox" in response.text
    bad = await app.client.post(
        SUBSCRIBE, data={"email": "not-an-address"}, headers={"Accept": "text/html"}
    )
    assert bad.status_code == 422
    assert "Email:" in bad.text and "@-sign" in bad.text
    await smtp.wait_for(1)


async def test_pending_resubscribe_after_the_interval_resends_a_working_link(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings.replace(resend_interval=0.3)) as app:
        await app.client.post(SUBSCRIBE, json={"email": "slow@example.com"})
        await smtp.wait_for(1)
        await asyncio.sleep(0.35)
        await app.client.post(SUBSCRIBE, json={"email": "slow@example.com"})
        first, second = await smtp.wait_for(2)
        assert first.message["Message-ID"] != second.message["Message-ID"]
        # The newest link confirms; after that, both show the subscription, no error.
        assert (await app.client.post(app.local(second.links["confirm"]))).status_code == 303
        assert (await app.client.post(app.local(first.links["confirm"]))).status_code == 303
        assert await status_of(app, "slow@example.com") == SubscriptionStatus.CONFIRMED
        async with app.db.read() as session:
            actions = (await session.scalars(select(ConsentRecord.action))).all()
        assert actions.count("confirm") == 1


async def test_an_old_confirmation_link_after_an_unsubscribe_offers_to_subscribe_again(
    app: Running, smtp: SMTPServer
) -> None:
    await app.client.post(SUBSCRIBE, json={"email": "back@example.com"})
    [first] = await smtp.wait_for(1)
    confirm = app.local(first.links["confirm"])
    assert (await app.client.post(confirm)).status_code == 303
    await app.client.post(app.local(first.links["unsubscribe"]))
    # A GET changes nothing (mail scanners fetch links): only the button does.
    offer = await app.client.get(confirm)
    assert offer.status_code == 200 and '<form method="post">' in offer.text
    assert await status_of(app, "back@example.com") == SubscriptionStatus.UNSUBSCRIBED
    again = await app.client.post(confirm)
    assert again.status_code == 303
    assert again.headers["location"] == (
        "/subscribe/daily/thanks?back=https%3A%2F%2Fwww.example.com%2F"
    )
    thanks = await app.client.get(again.headers["location"])
    assert thanks.status_code == 200 and "check your inbox" in visible(thanks)
    assert 'href="https://www.example.com/"' in thanks.text  # the way back to the site
    # Double opt-in as ever: a new confirmation email, and nothing changes until it is used.
    _, second = await smtp.wait_for(2)
    assert second.rcpt_tos == ["back@example.com"]
    assert await status_of(app, "back@example.com") == SubscriptionStatus.PENDING
    # The consent record says what the person saw and pressed, and where.
    async with app.db.read() as session:
        record = (
            await session.scalars(select(ConsentRecord).order_by(ConsentRecord.id.desc()))
        ).first()
    assert record is not None and record.action == "subscribe"
    assert record.method == "confirm-link" and "Subscribe again" in record.wording
    # Back, or a reload, on the old link: no error, a pointer to the new email.
    for method in ("GET", "POST"):
        stale = await app.client.request(method, confirm)
        assert stale.status_code == 200 and "Please use the newest email" in visible(stale)
    assert (await app.client.post(app.local(second.links["confirm"]))).status_code == 303
    assert await status_of(app, "back@example.com") == SubscriptionStatus.CONFIRMED


async def test_a_used_confirmation_link_past_its_expiry_still_shows_the_subscription(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings.replace(confirm_ttl=1.0)) as app:
        await app.client.post(SUBSCRIBE, json={"email": "late@example.com"})
        [mail] = await smtp.wait_for(1)
        confirm = app.local(mail.links["confirm"])
        assert (await app.client.post(confirm)).status_code == 303
        await asyncio.sleep(1.1)  # the link has expired since
        later = await app.client.get(confirm)
        assert later.status_code == 200 and "You're subscribed" in visible(later)


async def test_an_expired_link_to_a_signup_still_waiting_is_refused(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings.replace(confirm_ttl=1.0)) as app:
        await app.client.post(SUBSCRIBE, json={"email": "slowpoke@example.com"})
        [mail] = await smtp.wait_for(1)
        await asyncio.sleep(1.1)
        expired = await app.client.post(app.local(mail.links["confirm"]))
        assert expired.status_code == 400 and "not valid any more" in expired.text
        assert await status_of(app, "slowpoke@example.com") == SubscriptionStatus.PENDING


async def test_a_page_url_off_the_lists_sites_cannot_put_words_in_the_email(
    app: Running, smtp: SMTPServer
) -> None:
    """The footer names the reader's site only when it is one the list allows: a page URL
    is the caller's to choose, and a subscription bomber's text must not reach the victim."""
    await app.client.post(
        SUBSCRIBE,
        json={"email": "victim@example.com", "page_url": "https://WIN A PRIZE call now/x"},
    )
    [mail] = await smtp.wait_for(1)
    text = mail.message.get_body(preferencelist=("plain",))
    assert text is not None
    words = " ".join(text.get_content().split())
    assert "prize" not in words.lower()
    assert "signup form of Frühstücks-Briefing (www.example.com)" in words


async def test_an_erased_persons_old_link_never_reaches_someone_else(
    app: Running, smtp: SMTPServer
) -> None:
    """Links name a subscription by id: an erased one's id is never given to another."""
    from service.keys import signing_key
    from service.subscriptions import erase
    from service.suppressions import AddressKeys

    await app.client.post(SUBSCRIBE, json={"email": "gone@example.com"})
    [old] = await smtp.wait_for(1)
    async with app.db.read() as session:
        gone = await session.scalar(select(Subscription))
    assert gone is not None
    keys = AddressKeys(await signing_key(app.settings, app.db))
    assert await erase(app.db, gone.subscriber_id, "alice", keys)
    await app.client.post(SUBSCRIBE, json={"email": "next@example.com"})
    await smtp.wait_for(2)
    async with app.db.read() as session:
        fresh = await session.scalar(select(Subscription))
    assert fresh is not None and fresh.id != gone.id
    for method in ("GET", "POST"):
        stale = await app.client.request(method, app.local(old.links["confirm"]))
        assert stale.status_code == 400 and "next@example.com" not in stale.text
    assert await status_of(app, "next@example.com") == SubscriptionStatus.PENDING


async def test_the_consent_record_keeps_the_words_in_the_language_the_form_showed(
    app: Running, smtp: SMTPServer
) -> None:
    """A page can ask for the box in another language (data-lang): the consent record
    keeps the sentence the reader saw, not the list's default one."""
    reply = await app.client.post(SUBSCRIBE, json={"email": "leser@example.com", "lang": "de"})
    assert reply.status_code == 202
    await smtp.wait_for(1)
    async with app.db.read() as session:
        record = await session.scalar(select(ConsentRecord))
    assert record is not None
    assert record.wording == (
        "Mit dem Abonnieren willigen Sie ein, Frühstücks-Briefing per E-Mail zu erhalten. "
        "Sie können sich jederzeit mit einem Klick abmelden."
    )
    wrong = await app.client.post(SUBSCRIBE, json={"email": "x@example.com", "lang": "xx"})
    assert wrong.status_code == 422 and "lang" in wrong.json()["fields"]
