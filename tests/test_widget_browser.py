"""The subscribe box in real headless Chromium, on an article page from another origin.

Needs Debian's chromium (/usr/bin/chromium; the ``browser`` fixture in conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select
from support import ARTIFACTS, Running, SMTPServer, make_list, serve_app

from service.db import Database
from service.demo import ArticleServer, render_article
from service.lists import update_list
from service.models import Subscriber, Subscription, SubscriptionStatus
from service.settings import Settings

PHONE_SLOWDOWN = 6  # Chromium's CPU throttling, for a low-end phone
# One Chromium for the whole run, on the session's event loop; these tests share it.
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]

HOSTILE_CSS = """<style>
* { all: unset !important; }
html, body { font-size: 48px !important; line-height: 3 !important; color: red !important; }
form, input, button, label, h2, p { display: none !important; }
div { display: none !important; position: static !important; width: 10px !important; }
body > * { visibility: hidden !important; }
</style>"""


class Site:
    """The service plus an article page with the snippet, on a different origin."""

    def __init__(self, app: Running, article: ArticleServer) -> None:
        self.app = app
        self.article = article


@asynccontextmanager
async def site(
    settings: Settings,
    *,
    attributes: str = 'data-trigger="immediate"',
    allowed: bool = True,
    extra_head: str = "",
    inline: bool = False,
    slug: str = "daily",
    **list_options: Any,
) -> AsyncIterator[Site]:
    async with serve_app(settings, reachable=True) as app:
        script = (
            f'<script src="{app.url}/widget.js" data-list="{slug}" {attributes} async></script>'
        )
        with ArticleServer(render_article(script, extra_head=extra_head, inline=inline)) as page:
            origins = [page.url] if allowed else ["https://somewhere-else.example.com"]
            await make_list(settings, slug, origins=origins, **list_options)
            yield Site(app, page)


async def open_article(browser: Browser, url: str, **context: Any) -> Page:
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    await page.add_init_script("""
        window.__events = [];
        for (const name of ["shown", "dismissed", "subscribed", "error"]) {
          document.addEventListener("newsletter:" + name,
            (e) => window.__events.push([name, e.detail]));
        }""")
    await page.goto(url)
    return page


def box(page: Page) -> Any:
    return page.locator("div[data-newsletter] .box")


async def events(page: Page) -> list[str]:
    return [name for name, _ in await page.evaluate("window.__events")]


async def status_of(app: Running, email: str) -> SubscriptionStatus | None:
    async with app.db.read() as session:
        return await session.scalar(
            select(Subscription.status).join(Subscriber).where(Subscriber.email == email)
        )


async def test_box_slides_in_after_its_delay_and_the_whole_flow_works(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    async with site(settings, attributes='data-trigger="delay" data-delay="1"') as s:
        page = await open_article(
            browser, s.article.url + "/", viewport={"width": 1280, "height": 800}
        )
        await page.wait_for_timeout(400)
        assert await box(page).count() == 0, "not before its trigger"
        dialog = page.get_by_role("dialog", name="Get our newsletter")
        await expect(dialog).to_be_visible(timeout=5000)
        assert await dialog.get_attribute("aria-modal") == "false"
        await page.wait_for_timeout(400)  # let the slide-in finish
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "widget-desktop.png"))

        # A cookie the service set must not travel with the signup.
        await page.context.add_cookies([{"name": "session", "value": "x", "url": s.app.url}])
        await page.get_by_label("Email address").fill("reader@example.com")
        async with page.expect_request(re.compile(r".*/subscriptions$")) as caught:
            await page.get_by_role("button", name="Subscribe").click()
        request = await caught.value
        headers = await request.all_headers()
        assert "cookie" not in headers
        assert headers["origin"] == s.article.url
        await expect(page.get_by_text("Almost done! Check your inbox")).to_be_visible()
        assert await events(page) == ["shown", "subscribed"]

        [mail] = await smtp.wait_for(1)
        body = mail.message.get_body(preferencelist=("plain",))
        assert body is not None
        confirm = re.findall(r"http://\S+/confirm/\S+", body.get_content())[0]
        await page.goto(confirm)
        assert await status_of(s.app, "reader@example.com") == SubscriptionStatus.PENDING
        await page.get_by_role("button", name="Yes, subscribe me").click()
        await expect(page.get_by_role("heading", name="You're subscribed")).to_be_visible()
        assert await status_of(s.app, "reader@example.com") == SubscriptionStatus.CONFIRMED

        # Subscribed: the box never shows again on this site.
        await page.goto(s.article.url + "/")
        await page.wait_for_timeout(1600)
        assert await box(page).count() == 0


async def test_escape_closes_and_dismissal_is_remembered(
    browser: Browser, settings: Settings
) -> None:
    async with site(settings) as s:
        page = await open_article(browser, s.article.url + "/")
        await expect(box(page)).to_be_visible()
        await page.keyboard.press("Tab")  # into the box: Escape closes it from there
        await page.keyboard.press("Escape")
        await expect(box(page)).to_have_count(0)
        assert await events(page) == ["shown", "dismissed"]
        for _ in range(2):
            await page.reload()
            await page.wait_for_timeout(800)
            assert await box(page).count() == 0, "dismissed: not shown again"
        # Another reader (a fresh browser profile) still sees it, and can close it by button.
        other = await open_article(browser, s.article.url + "/")
        await expect(box(other)).to_be_visible()
        await other.get_by_role("button", name="Close").click()
        await expect(box(other)).to_have_count(0)


async def test_keyboard_only(browser: Browser, settings: Settings, smtp: SMTPServer) -> None:
    async with site(settings, attributes='data-trigger="immediate" data-name-field="true"') as s:
        page = await open_article(browser, s.article.url + "/")
        await expect(box(page)).to_be_visible()
        # No autofocus: opening the box must not pop up a phone's keyboard.
        assert await page.evaluate("document.activeElement === document.body")
        await page.keyboard.press("Tab")
        email = page.get_by_label("Email address")
        await expect(email).to_be_focused()
        await page.keyboard.type("keys@example.com")
        await page.keyboard.press("Tab")
        await expect(page.get_by_label("First name (optional)")).to_be_focused()
        await page.keyboard.type("Kay")
        await page.keyboard.press("Tab")
        button = page.get_by_role("button", name="Subscribe")
        await expect(button).to_be_focused()
        outline = await button.evaluate("b => getComputedStyle(b).outlineStyle")
        assert outline == "solid", "keyboard focus is visible"
        await page.keyboard.press("Enter")
        await expect(page.get_by_text("Almost done!")).to_be_visible()
        await smtp.wait_for(1)
        async with s.app.db.read() as session:
            name = await session.scalar(select(Subscriber.name))
        assert name == "Kay"


async def test_inline_validation_and_server_errors(browser: Browser, settings: Settings) -> None:
    async with site(settings) as s:
        page = await open_article(browser, s.article.url + "/")
        await page.get_by_role("button", name="Subscribe").click()
        await expect(page.get_by_text("Please enter a valid email address.")).to_be_visible()
        assert await page.get_by_label("Email address").get_attribute("aria-invalid") == "true"
        # A 429 from the service is shown in its words, without a reload.
        await page.route(
            re.compile(r".*/subscriptions$"),
            lambda route: route.fulfill(
                status=429,
                content_type="application/json",
                body='{"error": "too_many_requests", "message": "Please try again later."}',
            ),
        )
        await page.get_by_label("Email address").fill("busy@example.com")
        await page.get_by_role("button", name="Subscribe").click()
        await expect(page.get_by_text("Please try again later.")).to_be_visible()
        assert (await events(page))[-1] == "error"


async def test_hostile_host_stylesheet_cannot_break_the_box(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    async with site(settings, extra_head=HOSTILE_CSS) as s:
        page = await open_article(
            browser, s.article.url + "/", viewport={"width": 1280, "height": 800}
        )
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_be_visible()
        await page.wait_for_timeout(400)  # the slide-in transition
        size = await box(page).bounding_box()
        assert size is not None
        assert 300 <= size["width"] <= 360 and 150 <= size["height"] <= 600, size
        assert size["x"] + size["width"] <= 1280 and size["y"] + size["height"] <= 800
        font = await page.get_by_label("Email address").evaluate(
            "e => getComputedStyle(e).fontSize"
        )
        assert font == "16px"
        await page.screenshot(path=str(ARTIFACTS / "widget-hostile-css.png"))
        await page.get_by_label("Email address").fill("hostile@example.com")
        await page.get_by_role("button", name="Subscribe").click()
        await expect(page.get_by_text("Almost done!")).to_be_visible()
        await smtp.wait_for(1)


async def test_phone_layout_and_reduced_motion(browser: Browser, settings: Settings) -> None:
    async with site(settings) as s:
        page = await open_article(
            browser,
            s.article.url + "/",
            is_mobile=True,
            has_touch=True,
            viewport={"width": 360, "height": 740},
            reduced_motion="reduce",
        )
        await expect(box(page)).to_be_visible()
        await page.wait_for_timeout(200)
        size = await box(page).bounding_box()
        assert size is not None
        assert size["x"] >= 0 and size["x"] + size["width"] <= 360
        assert size["height"] <= 0.62 * 740, "the article stays partly visible"
        await page.screenshot(path=str(ARTIFACTS / "widget-phone.png"))
        duration = await box(page).evaluate("b => getComputedStyle(b).transitionDuration")
        assert duration in {"0s", ""}, duration


async def test_scroll_trigger_and_inline_mode(browser: Browser, settings: Settings) -> None:
    async with site(settings, attributes='data-trigger="scroll" data-scroll="60"') as s:
        page = await open_article(browser, s.article.url + "/")
        await page.wait_for_timeout(500)
        assert await box(page).count() == 0
        await page.mouse.wheel(0, 100000)
        await expect(box(page)).to_be_visible()
    async with site(
        settings,
        slug="exit",
        attributes='data-trigger="exit"',
    ) as s:
        page = await open_article(browser, s.article.url + "/")
        await page.mouse.move(600, 400)
        await page.mouse.move(600, 200)
        await page.wait_for_timeout(300)
        assert await box(page).count() == 0, "moving around the page is not leaving it"
        # The pointer leaves through the top edge, towards the tabs and the back button.
        await page.evaluate("""document.documentElement.dispatchEvent(new MouseEvent(
            "mouseout", {bubbles: true, clientX: 600, clientY: -2, relatedTarget: null}))""")
        await expect(box(page)).to_be_visible()
    async with site(
        settings,
        slug="inline",
        attributes='data-target="#newsletter-inline"',
        inline=True,
    ) as s:
        page = await open_article(browser, s.article.url + "/")
        region = page.locator("#newsletter-inline").get_by_role("region")
        await expect(region).to_be_visible()
        assert await page.get_by_role("button", name="Close").count() == 0
        position = await page.locator("#newsletter-inline div[data-newsletter]").evaluate(
            "e => getComputedStyle(e).position"
        )
        assert position == "static"


async def test_the_box_speaks_the_lists_language(browser: Browser, settings: Settings) -> None:
    async with site(settings, language="de") as s:
        page = await open_article(browser, s.article.url + "/")
        await expect(page.get_by_role("dialog", name="Unser Newsletter")).to_be_visible()
        await expect(page.get_by_role("button", name="Abonnieren")).to_be_visible()
        await expect(page.get_by_role("button", name="Schließen")).to_be_visible()


async def test_hosted_page_works_without_javascript(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    async with site(settings) as s:
        page = await open_article(
            browser, s.app.url + "/subscribe/daily", java_script_enabled=False
        )
        await page.get_by_label("Email address").fill("nojs@example.com")
        await page.get_by_role("button", name="Subscribe").click()
        await expect(page.get_by_role("heading", name="Almost done")).to_be_visible()
        [mail] = await smtp.wait_for(1)
        assert mail.rcpt_tos == ["nojs@example.com"]


async def pow_list(settings: Settings, slug: str = "daily") -> None:
    db = Database.from_url(settings.database_url)
    try:
        await update_list(db, slug, {"proofOfWork": "true"})
    finally:
        await db.dispose()


async def test_proof_of_work_is_solved_in_the_background_on_a_slow_phone(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    async with site(settings) as s:
        await pow_list(settings)
        ctx = await browser.new_context(
            is_mobile=True, has_touch=True, viewport={"width": 360, "height": 740}
        )
        page = await ctx.new_page()
        cdp = await ctx.new_cdp_session(page)
        await cdp.send("Emulation.setCPUThrottlingRate", {"rate": PHONE_SLOWDOWN})
        await page.goto(s.article.url + "/")
        await expect(box(page)).to_be_visible()
        await page.get_by_label("Email address").fill("phone@example.com")
        async with page.expect_request(re.compile(r".*/subscriptions$")) as caught:
            await page.get_by_role("button", name="Subscribe").click()
        sent = (await caught.value).post_data or ""
        assert "pow_challenge=daily." in sent and "pow_solution=" in sent
        await expect(page.get_by_text("Almost done!")).to_be_visible()
        [mail] = await smtp.wait_for(1)
        assert mail.rcpt_tos == ["phone@example.com"]
        took = await page.evaluate("performance.getEntriesByName('newsletter:pow')[0].duration")
        print(
            f"proof of work, {settings.pow_difficulty} bits, CPU slowed {PHONE_SLOWDOWN}x: "
            f"{took:.0f} ms"
        )
        assert took < 3000, "one solve; the median is well under a second (bench/pow_bench.py)"
        await ctx.close()


async def test_hosted_page_of_a_proof_of_work_list(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    async with site(settings) as s:
        await pow_list(settings)
        page = await open_article(browser, s.app.url + "/subscribe/daily")
        await page.get_by_label("Email address").fill("hosted@example.com")
        await page.get_by_role("button", name="Subscribe").click()
        await expect(page.get_by_role("heading", name="Almost done")).to_be_visible()
        [mail] = await smtp.wait_for(1)
        assert mail.rcpt_tos == ["hosted@example.com"]
        # Without JavaScript the page says so (in <noscript>, which Playwright's "no
        # JavaScript" does not render: it stops scripts but the parser still thinks they
        # run) and the result page says it again.
        page = await open_article(
            browser, s.app.url + "/subscribe/daily", java_script_enabled=False
        )
        assert "<noscript><p><strong>To keep robots out" in await page.content()
        await page.get_by_label("Email address").fill("nojs@example.com")
        await page.get_by_role("button", name="Subscribe").click()
        await expect(page.get_by_role("heading", name="did not go through")).to_be_visible()
        await expect(page.get_by_text("needs JavaScript")).to_be_visible()
