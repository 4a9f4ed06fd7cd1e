"""An editor's session in real Chromium: sign in, make a list, preview it, find a reader,
export a list as a download and import it into another."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from support import ARTIFACTS, SMTPServer, make_list, serve_app

from service.auth.users import create_user
from service.settings import Settings

# One Chromium for the whole run, on the session's event loop; these tests share it.
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]

PASSWORD = "correct horse battery"


async def test_editor_session(browser: Browser, settings: Settings, smtp: SMTPServer) -> None:
    await make_list(settings)
    async with serve_app(settings, reachable=True) as app:
        await create_user(app.db, "alice", PASSWORD)
        for i in range(5):
            await app.client.post(
                "/api/v1/lists/daily/subscriptions",
                json={"email": f"reader{i}@example.com", "name": f"Reader {i}"},
            )
        await smtp.wait_for(5)

        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(app.url + "/admin/subscribers")
        await expect(page.get_by_role("heading", name="Newsletter admin")).to_be_visible()
        await page.get_by_label("Username").fill("alice")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Subscribers")).to_be_visible()

        await page.get_by_role("link", name="Dashboard").click()
        await expect(
            page.get_by_role("img", name="Signups and confirmations per day")
        ).to_be_visible()
        Path(ARTIFACTS).mkdir(exist_ok=True)  # noqa: ASYNC240 - once, tiny
        await page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)

        await page.get_by_role("link", name="Lists").click()
        await page.get_by_label("Slug (in URLs and the snippet)").fill("weekly")
        await page.get_by_label("Name readers see").fill("The Weekly")
        await page.get_by_role("button", name="Create list").click()
        await expect(page.get_by_text("List created.")).to_be_visible()
        await expect(page.get_by_text('data-list="weekly"')).to_be_visible()

        preview = page.frame_locator("iframe.preview")
        await expect(preview.get_by_role("region", name="Get our newsletter")).to_be_visible()
        await page.get_by_label("Title").fill("Every Friday")
        await expect(preview.get_by_role("region", name="Every Friday")).to_be_visible()
        await page.get_by_role("button", name="Save").click()
        await expect(page.get_by_text("Saved.")).to_be_visible()

        await page.get_by_role("link", name="Subscribers").click()
        await page.get_by_label("Email or name contains").fill("reader3")
        await page.get_by_role("button", name="Search").click()
        await expect(page.get_by_role("link", name="reader3@example.com")).to_be_visible()
        await expect(page.get_by_role("link", name="reader1@example.com")).to_have_count(0)
        await page.get_by_label("Email or name contains").fill("")
        await page.get_by_role("button", name="Search").click()
        await page.screenshot(path=str(ARTIFACTS / "admin-subscribers.png"), full_page=True)
        await page.get_by_role("link", name="reader3@example.com").click()
        await expect(page.get_by_role("heading", name="Consent history")).to_be_visible()
        # On a phone, the long user agent and wording take the width: the list's slug
        # and the time still read on one line each (not "dail y").
        await page.set_viewport_size({"width": 360, "height": 800})
        lines = await page.evaluate(
            """() => [...document.querySelectorAll("td.nowrap")].map((cell) => {
                const range = document.createRange();
                range.selectNodeContents(cell);
                return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
            })"""
        )
        assert lines and set(lines) == {1}
        await page.set_viewport_size({"width": 1280, "height": 900})

        # Export the list's pending readers as a download, and import the file elsewhere.
        await page.get_by_role("link", name="Export & import").click()
        await page.get_by_label("List", exact=True).select_option("daily")
        await page.get_by_role("checkbox", name="confirmed").uncheck()
        await page.get_by_role("checkbox", name="pending").check()
        async with page.expect_download() as started:
            await page.get_by_role("button", name="Download").click()
        download = await started.value
        assert download.suggested_filename.startswith("daily-")
        assert download.suggested_filename.endswith(".csv")
        saved = ARTIFACTS / "export.csv"
        await download.save_as(saved)
        lines = saved.read_bytes().split(b"\r\n")
        assert lines[0].startswith(b"email,name,list,status,")
        assert sorted(line.split(b",")[0] for line in lines[1:] if line) == [
            f"reader{i}@example.com".encode() for i in range(5)
        ]
        await page.get_by_label("Into list").select_option("weekly")
        await page.get_by_label("CSV file").set_input_files(saved)
        await page.get_by_role("button", name="Import").click()
        await expect(page.get_by_text("5 sent a confirmation email")).to_be_visible()
        await smtp.wait_for(10)
        await context.close()
