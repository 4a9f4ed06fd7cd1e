"""What the box did, end to end in real Chromium: readers see, dismiss and submit the box on
several pages and variants of an A/B test, some confirm by their emails, and the admin's
funnel, page table and variant results then show exactly that. The privacy rules too: no
cookie, nothing sent under Do Not Track or Global Privacy Control, no row per reader;
and targeting: a page its rules leave out asks the service for nothing.

Needs Debian's chromium (/usr/bin/chromium; the ``browser`` fixture in conftest.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select
from support import SMTPServer, bearer, make_list, serve_app, signups_acted_on

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.box_tests import start_test
from service.demo import ArticleServer, render_article
from service.lists import get_list, update_list
from service.models import BoxCount
from service.settings import Settings

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]

DNT = "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'});"
GPC = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});"


@dataclass
class Reader:
    page: str
    action: str  # "dismiss", "submit" or "look"
    email: str = ""
    confirms: bool = False
    phone: bool = False
    private: str = ""  # DNT or GPC: nothing may be counted
    variant: str = ""  # "control" or "b": given before the visit (kept), else picked


READERS = [
    Reader("/news/one", "dismiss", variant="control"),
    Reader("/news/one", "submit", "ann@example.com", confirms=True, variant="control"),
    Reader("/news/one", "submit", "bob@example.com", variant="b"),
    Reader("/news/two", "submit", "cy@example.com", confirms=True, phone=True, variant="b"),
    Reader("/news/two", "look", phone=True),
    Reader("/news/two", "dismiss"),
    Reader("/news/three", "submit", "dee@example.com", confirms=True, private=DNT),
    Reader("/news/three", "dismiss", private=GPC),
]


async def visit(browser: Browser, url: str, reader: Reader, keys: dict[str, str]) -> Page:
    width = 400 if reader.phone else 1280
    context = await browser.new_context(viewport={"width": width, "height": 800})
    page = await context.new_page()
    if reader.private:
        await page.add_init_script(reader.private)
    if reader.variant:
        # The variant this reader was first shown, kept from an earlier visit.
        await page.add_init_script(
            f"localStorage.setItem('nlw:daily:variant', {keys[reader.variant]!r})"
        )
    page.on("request", lambda r: context_requests.append((r.url, r.headers)))
    await page.goto(url + reader.page + "?utm_source=x#top")
    return page


context_requests: list[tuple[str, dict[str, str]]] = []


async def eventually(check: Any, timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something true (beacons arrive on their own time)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


@pytest.mark.scenario
async def test_what_readers_did_is_what_the_admin_shows(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    context_requests.clear()
    async with serve_app(settings, reachable=True) as app:
        script = (
            f'<script src="{app.url}/widget.js" data-list="daily" data-trigger="immediate" '
            "async></script>"
        )
        with ArticleServer(render_article(script)) as site:
            await make_list(settings, "daily", origins=[site.url])
            daily = await get_list(app.db, "daily")
            assert daily is not None
            test = await start_test(
                app.db, daily, "Title", 1, [{"label": "b", "title": "Variant B says hello"}]
            )
            keys = {"control": test.variants[0]["key"], "b": test.variants[1]["key"]}
            names = {v: k for k, v in keys.items()}
            await create_user(app.db, "alice", "correct horse battery")
            token = await create_token(app.db, "alice", "tests")

            seen: list[tuple[Reader, str]] = []
            for reader in READERS:
                page = await visit(browser, site.url, reader, keys)
                dialog = page.get_by_role("dialog")
                await expect(dialog).to_be_visible(timeout=10_000)
                stored = await page.evaluate("localStorage.getItem('nlw:daily:variant')")
                variant = names[stored]
                if reader.variant:
                    assert variant == reader.variant, "a reader keeps their variant"
                title = "Variant B says hello" if variant == "b" else "Get our newsletter"
                await expect(page.get_by_role("heading", name=title)).to_be_visible()
                if reader.action == "dismiss":
                    await page.get_by_role("button", name="Close").click()
                    await expect(dialog).to_have_count(0)
                elif reader.action == "submit":
                    await page.get_by_label("Email address").fill(reader.email)
                    await page.get_by_role("button", name="Subscribe").click()
                    await expect(page.get_by_text("Check your inbox")).to_be_visible()
                seen.append((reader, variant))
                assert not await page.context.cookies(app.url)

            # Confirm by email, as the readers do.
            emails = {r.email for r in READERS if r.email}
            mails = await smtp.wait_for(len(emails))
            await signups_acted_on(app.db)
            confirmers = {r.email for r in READERS if r.confirms}
            for mail in mails:
                if mail.rcpt_tos[0] in confirmers:
                    done = await app.client.post(app.local(mail.links["confirm"]))
                    assert done.status_code == 303

            # What the admin should show: the private readers count for nothing.
            counted = [(r, v) for r, v in seen if not r.private]
            expected: Counter[tuple[str, str, str, str]] = Counter()
            for reader, variant in counted:
                where = (reader.page, variant, "phone" if reader.phone else "larger")
                expected[(*where, "shown")] += 1
                if reader.action == "dismiss":
                    expected[(*where, "dismissed")] += 1
                if reader.action == "submit":
                    expected[(*where, "submitted")] += 1
                    expected[(*where, "accepted")] += 1
                if reader.confirms:
                    expected[(*where, "confirmed")] += 1
            totals: Counter[str] = Counter()
            for (_, _, _, event), n in expected.items():
                totals[event] += n

            async def funnel() -> dict[str, Any] | None:
                got = await app.client.get("/api/v1/admin/lists/daily/box", headers=bearer(token))
                body: dict[str, Any] = got.json()
                counts = {e: body["funnel"][e] for e in totals}
                return body if counts == dict(totals) else None

            report = await eventually(funnel)
            assert report is not None, "the admin's funnel shows exactly what happened"
            assert totals == Counter(
                {"shown": 6, "dismissed": 2, "submitted": 3, "accepted": 3, "confirmed": 2}
            )
            pages = {p["page"]: p for p in report["pages"]}
            assert set(pages) == {"/news/one", "/news/two"}, "no page from a private reader"
            for path in pages:
                for event in ("shown", "submitted", "confirmed"):
                    want = sum(n for k, n in expected.items() if k[0] == path and k[3] == event)
                    assert pages[path][event] == want, (path, event)

            # The rows are counts per page, variant, device and event: none per reader.
            async with app.db.read() as session:
                rows = (
                    await session.execute(
                        select(
                            BoxCount.page,
                            BoxCount.variant,
                            BoxCount.device,
                            BoxCount.event,
                            BoxCount.count,
                        )
                    )
                ).all()
            stored_rows = {(p, names[v], d, e): n for p, v, d, e, n in rows}
            assert stored_rows == dict(expected)

            # The variant results, as the admin reads them.
            tests = await app.client.get("/api/v1/admin/lists/daily/tests", headers=bearer(token))
            [result] = tests.json()["tests"]
            by_variant = {names[v["key"]]: v for v in result["variants"]}
            for name in ("control", "b"):
                for event in ("shown", "confirmed"):
                    want = sum(n for k, n in expected.items() if k[1] == name and k[3] == event)
                    assert by_variant[name][event] == want, (name, event)

            # The admin page shows the same pages and variants.
            admin_page = await app.client.get("/admin/lists/daily/box", headers=bearer(token))
            text = re.sub(r"\s+", " ", admin_page.text)
            for path, row in pages.items():
                assert (
                    f"<td>{path}</td><td>{row['shown']}</td><td>{row['submitted']}</td>"
                    f"<td>{row['confirmed']}</td>"
                ) in text

            # No cookie went to the service with any beacon or signup; the private readers
            # sent no beacon at all.
            beacons = [(u, h) for u, h in context_requests if u.endswith("/events")]
            assert beacons and all("cookie" not in h for _, h in beacons)
            assert len(beacons) == sum(
                expected[k] for k in expected if k[3] in {"shown", "dismissed", "submitted"}
            )


async def test_a_page_its_rules_leave_out_asks_for_nothing(
    browser: Browser, settings: Settings
) -> None:
    async with serve_app(settings, reachable=True) as app:
        script = (
            f'<script src="{app.url}/widget.js" data-list="daily" data-trigger="immediate" '
            'data-hide-on="/private/* /members" async></script>'
        )
        with ArticleServer(render_article(script)) as site:
            await make_list(settings, "daily", origins=[site.url])
            await update_list(app.db, "daily", {"afterViews": "1"})
            context = await browser.new_context()
            page = await context.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            # The list shows the box from the second page of a visit: the first asks for
            # the list's settings and nothing more.
            await page.goto(site.url + "/news/first")
            await page.wait_for_timeout(800)
            assert await page.locator("div[data-newsletter]").count() == 0
            assert [u for u in requests if "/api/v1/lists/daily/widget" in u]
            assert not [u for u in requests if "/challenge" in u or "/events" in u]
            # Left out by the page's own attribute: no request to the service but the
            # script and its targeting part.
            requests.clear()
            await page.goto(site.url + "/private/story")
            await page.wait_for_timeout(800)
            assert await page.locator("div[data-newsletter]").count() == 0
            asked = [u for u in requests if u.startswith(app.url)]
            assert all("/widget.js" in u or "/widget/target.js" in u for u in asked), asked
            # The third page of the visit, not left out: the box shows.
            await page.goto(site.url + "/news/second")
            await expect(page.get_by_role("dialog")).to_be_visible(timeout=10_000)
