"""Hostile input and strict policies in real Chromium: nothing injected runs, nothing of
ours is blocked.

Every page records JavaScript dialogs (an injected ``alert(1)`` would open one) and the
console's Content-Security-Policy reports (our own pages must not trip their policy).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from support import ARTIFACTS, SUBSCRIBE, SMTPServer, make_list, serve_app

from service.auth.users import create_user
from service.demo import ArticleServer, render_article
from service.lists import update_list
from service.settings import Settings

# One Chromium for the whole run, on the session's event loop; these tests share it.
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PASSWORD = "correct horse battery"


class Watched:
    """A page whose dialogs and policy reports are recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.reports: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.reports.append(message.text)

    def assert_clean(self) -> None:
        assert self.dialogs == [], "injected script ran"
        assert self.reports == [], "the policy blocked something"


def snippet(service_url: str) -> str:
    return (
        f'<script src="{service_url}/widget.js" data-list="daily" data-trigger="immediate" '
        "async></script>"
    )


async def watched(browser: Browser, **context: Any) -> Watched:
    ctx = await browser.new_context(**context)
    return Watched(await ctx.new_page())


async def test_hostile_input_runs_nowhere_in_the_admin_pages(
    browser: Browser,
    settings: Settings,
    smtp: SMTPServer,
) -> None:
    await make_list(settings, name=SCRIPT + IMG, consent_text=IMG)
    async with serve_app(settings, reachable=True) as app:
        await update_list(app.db, "daily", {"title": SCRIPT, "text": IMG, "button": IMG})
        await create_user(app.db, "alice", PASSWORD)
        response = await app.client.post(
            SUBSCRIBE, json={"email": "evil@example.com", "name": SCRIPT + IMG}
        )
        assert response.status_code == 202
        await smtp.wait_for(1)

        w = await watched(browser, viewport={"width": 1280, "height": 900})
        page = w.page
        await page.goto(app.url + "/admin/login")
        await page.get_by_label("Username").fill("alice")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(
            page.get_by_role("img", name="Signups and confirmations per day")
        ).to_be_visible()
        await expect(page.get_by_role("link", name=SCRIPT + IMG)).to_be_visible()
        # Styled by the nonce'd stylesheet: the cards are white boxes with rounded corners.
        radius = await page.locator(".card").first.evaluate(
            "e => getComputedStyle(e).borderTopLeftRadius"
        )
        assert radius == "12px"

        await page.get_by_role("link", name="Lists", exact=True).click()
        await page.get_by_role("link", name=SCRIPT + IMG).click()
        await expect(page.get_by_role("heading", name=SCRIPT + IMG)).to_be_visible()
        # The preview frame runs the widget (nonce'd script, constructed stylesheet).
        preview = page.frame_locator("iframe.preview")
        region = preview.get_by_role("region", name=SCRIPT)
        await expect(region).to_be_visible()
        await expect(preview.get_by_role("button", name=IMG)).to_be_visible()
        await page.get_by_label("Title").fill(IMG)  # admin.js reloads the preview
        await expect(preview.get_by_role("region", name=IMG)).to_be_visible()

        await page.get_by_role("link", name="Subscribers").click()
        await expect(page.get_by_role("cell", name=SCRIPT + IMG)).to_be_visible()
        await page.get_by_role("link", name="evil@example.com").click()
        await expect(page.get_by_role("heading", name="Consent history")).to_be_visible()
        await expect(page.get_by_text(SCRIPT + IMG).first).to_be_visible()
        await page.get_by_role("link", name="Export & import").click()
        await expect(page.get_by_label("List", exact=True)).to_contain_text(SCRIPT + IMG)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "admin-hostile-input.png"), full_page=True)
        await page.wait_for_timeout(300)
        w.assert_clean()
        await page.context.close()


async def test_hostile_texts_run_nowhere_in_the_widget_and_the_reader_pages(
    browser: Browser,
    settings: Settings,
    smtp: SMTPServer,
) -> None:
    async with serve_app(settings, reachable=True) as app:
        script = snippet(app.url)
        with ArticleServer(render_article(script)) as article:
            await make_list(
                settings,
                name=SCRIPT + IMG,
                consent_text=IMG + SCRIPT,
                origins=[article.url],
            )
            await update_list(
                app.db,
                "daily",
                {"title": SCRIPT, "text": IMG, "success": SCRIPT, "consentCheckbox": "true"},
            )
            w = await watched(browser)
            page = w.page
            await page.goto(article.url + "/")
            dialog = page.get_by_role("dialog", name=SCRIPT)
            await expect(dialog).to_be_visible()
            await expect(dialog.get_by_text(IMG + SCRIPT)).to_be_visible()
            await page.get_by_label("Email address").fill("reader@example.com")
            await page.get_by_role("checkbox").check()
            await page.get_by_role("button", name="Subscribe").click()
            # The success view: its own heading, and the success text shown as text.
            done = page.get_by_role("dialog", name="Almost done")
            await expect(done.get_by_text(SCRIPT, exact=True)).to_have_count(1)
            [mail] = await smtp.wait_for(1)
            body = mail.message.get_body(preferencelist=("plain",))
            assert body is not None
            confirm = re.findall(r"http://\S+/confirm/\S+", body.get_content())[0]

            await page.goto(app.url + "/subscribe/daily")
            await expect(page.get_by_role("heading", name=SCRIPT)).to_be_visible()
            await page.goto(confirm)
            await expect(page.get_by_text(SCRIPT + IMG).first).to_be_visible()
            await page.get_by_role("button", name="Yes, subscribe me").click()
            await expect(page.get_by_role("heading", name="You're subscribed")).to_be_visible()
            await page.wait_for_timeout(300)
            w.assert_clean()
            await page.context.close()


async def test_the_widget_works_under_a_strict_host_page_policy(
    browser: Browser,
    settings: Settings,
    smtp: SMTPServer,
) -> None:
    async with serve_app(settings, reachable=True) as app:
        # What the README asks of a site with a strict policy: our origin in script-src
        # and connect-src. Nothing for styles: the box needs no inline style of the page's.
        meta = (
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            f"script-src {app.url}; connect-src {app.url}; style-src 'none'; "
            "object-src 'none'; base-uri 'none'\">"
        )
        script = snippet(app.url)
        with ArticleServer(render_article(script, extra_head=meta)) as article:
            await make_list(settings, origins=[article.url])
            w = await watched(browser, viewport={"width": 1280, "height": 800})
            page = w.page
            await page.goto(article.url + "/")
            dialog = page.get_by_role("dialog", name="Get our newsletter")
            await expect(dialog).to_be_visible()
            box = page.locator("div[data-newsletter] .box")
            await page.wait_for_timeout(400)
            size = await box.bounding_box()
            assert size is not None and 300 <= size["width"] <= 360, size
            assert size["x"] + size["width"] <= 1280 and size["y"] + size["height"] <= 800
            radius = await box.evaluate("e => getComputedStyle(e).borderTopLeftRadius")
            assert radius == "12px", "the box's stylesheet applies"
            position = await page.locator("div[data-newsletter]").evaluate(
                "e => getComputedStyle(e).position"
            )
            assert position == "fixed", "the host element's style applies"
            await page.screenshot(path=str(ARTIFACTS / "widget-strict-csp.png"))
            await page.get_by_label("Email address").fill("strict@example.com")
            await page.get_by_role("button", name="Subscribe").click()
            await expect(page.get_by_text("Almost done!")).to_be_visible()
            await smtp.wait_for(1)
            w.assert_clean()
            await page.context.close()


async def test_the_mail_catcher_shows_the_html_part_styled_and_powerless(
    browser: Browser,
    settings: Settings,
) -> None:
    catcher = settings.replace(smtp_host="")
    await make_list(catcher, name=SCRIPT + IMG)
    async with serve_app(catcher, reachable=True) as app:
        await app.client.post(SUBSCRIBE, json={"email": "dev@example.com"})
        for _ in range(200):
            if "/dev/mail/1" in (await app.client.get("/dev/mail")).text:
                break
            await asyncio.sleep(0.05)
        w = await watched(browser)
        page = w.page
        await page.goto(app.url + "/dev/mail")
        await page.get_by_role("link", name=re.compile("Confirm")).click()
        frame = page.frame_locator("iframe")
        button = frame.get_by_role("link", name="Yes, subscribe me")
        await expect(button).to_be_visible()
        background = await button.evaluate("e => getComputedStyle(e).backgroundColor")
        assert background == "rgb(26, 86, 219)", "the email's own styles apply"
        scripts = await frame.locator("body").evaluate("b => b.ownerDocument.scripts.length")
        assert scripts == 0
        await page.wait_for_timeout(300)
        w.assert_clean()
        await page.context.close()
