"""Editing in real Chromium: the list editor keeps every unsaved edit when one field is
wrong and shows the error at that field; a bulk action asks with the count first."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect
from support import PASSWORD, Running, SMTPServer, add_people, make_list, serve_app

from service.auth.users import create_user
from service.lists import get_list
from service.settings import Settings

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]


async def signed_in(browser: Browser, app: Running, path: str) -> Page:
    await create_user(app.db, "alice", PASSWORD)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(app.url + path)
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    return page


async def test_the_list_editor_keeps_unsaved_edits_and_marks_the_wrong_field(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings, reachable=True) as app:
        page = await signed_in(browser, app, "/admin/lists/daily")
        await page.get_by_label("Name", exact=True).fill("The Daily Brief")
        await page.get_by_label("Title").fill("Every Friday")
        await page.get_by_label("Sites allowed to show the box").fill("https://news.example.com")
        await page.get_by_label("Ask for a first name").check()
        await page.get_by_label("Delay (s)").fill("soon")
        await page.get_by_role("button", name="Save").click()

        await expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
        delay = page.get_by_label("Delay (s)")
        await expect(delay).to_have_attribute("aria-invalid", "true")
        await expect(delay).to_have_accessible_description("must be a whole number")
        await expect(delay).to_have_value("soon")
        # Every other edit is still there, and no other field is marked.
        await expect(page.get_by_label("Name", exact=True)).to_have_value("The Daily Brief")
        await expect(page.get_by_label("Title")).to_have_value("Every Friday")
        await expect(page.get_by_label("Sites allowed to show the box")).to_have_value(
            "https://news.example.com"
        )
        await expect(page.get_by_label("Ask for a first name")).to_be_checked()
        await expect(page.locator("[aria-invalid=true]")).to_have_count(1)
        unchanged = await get_list(app.db, "daily")
        assert unchanged is not None and unchanged.name != "The Daily Brief"

        await delay.fill("5")
        await page.get_by_role("button", name="Save").click()
        await expect(page.get_by_text("Saved.")).to_be_visible()
        await expect(page.locator("[aria-invalid=true]")).to_have_count(0)
        saved = await get_list(app.db, "daily")
        assert saved is not None and saved.name == "The Daily Brief"
        assert saved.widget["title"] == "Every Friday" and saved.widget["delay"] == 5
        assert saved.widget["nameField"] is True
        assert saved.allowed_origins == ["https://news.example.com"]


async def test_a_bulk_unsubscribe_says_how_many_before_it_acts(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings, reachable=True) as app:
        await add_people(app)
        page = await signed_in(browser, app, "/admin/subscribers?list=daily&status=confirmed")
        await expect(page.get_by_text("1\u201312 of 12 people")).to_be_visible()
        await page.get_by_label("With all 12 people found").select_option("unsubscribe")
        await page.get_by_role("button", name="Go on…").click()
        await expect(
            page.get_by_role("heading", name="Yes, unsubscribe 12 people?")
        ).to_be_visible()
        await expect(page.get_by_text("Unsubscribe 12 people from")).to_be_visible()
        await page.get_by_role("button", name="Yes, unsubscribe 12 people").click()
        await expect(page.get_by_role("status")).to_have_text("12 people unsubscribed.")
        await page.get_by_role("link", name="Back to subscribers").click()
        await expect(page.get_by_text("No subscribers match.")).to_be_visible()
