"""An owner and an editor in real Chromium: the owner adds an editor, makes a scoped API
token, reads the audit log; the editor sees only what an editor may do; the owner ends
the editor's session and disables them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from support import ARTIFACTS, PASSWORD, SMTPServer, make_list, serve_app

from service.auth.users import create_user
from service.settings import Settings

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]

EDITOR_PASSWORD = "plum kettle orbit sunday"


async def _sign_in(page: Page, url: str, username: str, password: str) -> None:
    await page.goto(url + "/admin/sessions")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


# What the pages show is the same on both backends; the API tests run on both.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_owner_manages_admins_tokens_sessions_and_reads_the_audit_log(
    browser: Browser, settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings, reachable=True) as app:
        await create_user(app.db, "alice", PASSWORD)
        owner_context = await browser.new_context(viewport={"width": 1280, "height": 900})
        owner = await owner_context.new_page()
        await _sign_in(owner, app.url, "alice", PASSWORD)
        await expect(
            owner.get_by_role("heading", name="Signed-in sessions of every admin")
        ).to_be_visible()
        await expect(owner.get_by_text("This browser")).to_be_visible()

        # Add an editor.
        await owner.get_by_role("link", name="Admins").click()
        await owner.get_by_label("Username").fill("bob")
        await owner.get_by_label("Password (at least").fill(EDITOR_PASSWORD)
        await owner.get_by_label("Role", exact=True).select_option("editor")
        await owner.get_by_role("button", name="Add admin").click()
        await expect(owner.get_by_text("Admin added.")).to_be_visible()
        await expect(owner.get_by_role("cell", name="bob", exact=True)).to_be_visible()
        # The last owner cannot be disabled: the page says why.
        await owner.get_by_role("button", name="Disable alice").click()
        await expect(owner.get_by_role("alert")).to_contain_text("last active owner")

        # A token with two scopes and an expiry, shown once, then listed.
        await owner.get_by_role("link", name="API tokens").click()
        await owner.get_by_label("What it is for").fill("nightly export")
        await owner.get_by_label("Expires after").fill("30")
        await owner.get_by_role("checkbox", name="export").check()
        await owner.get_by_role("button", name="Make token").click()
        token = await owner.locator("#new-token").inner_text()
        assert token.startswith("nlt_")
        row = owner.get_by_role("row", name="nightly export")
        await expect(row).to_contain_text("read")
        await expect(row).to_contain_text("export")
        expiry = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")
        await expect(row.get_by_role("cell", name=expiry)).to_be_visible()
        answer = await app.client.get(
            "/api/v1/admin/exports", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200
        Path(ARTIFACTS).mkdir(exist_ok=True)  # noqa: ASYNC240 - once, tiny
        await owner.screenshot(path=str(ARTIFACTS / "admin-tokens.png"), full_page=True)

        # The editor signs in elsewhere: no export, no erasure, no admin pages offered.
        editor_context = await browser.new_context(viewport={"width": 390, "height": 844})
        editor = await editor_context.new_page()
        await _sign_in(editor, app.url, "bob", EDITOR_PASSWORD)
        await expect(editor.get_by_role("heading", name="Your signed-in sessions")).to_be_visible()
        await expect(editor.get_by_role("link", name="Audit log")).to_have_count(0)
        await expect(editor.get_by_role("link", name="Admins")).to_have_count(0)
        await expect(editor.get_by_role("link", name="Import", exact=True)).to_be_visible()
        await editor.get_by_role("link", name="Import", exact=True).click()
        await expect(editor.get_by_role("button", name="Download")).to_have_count(0)
        await editor.goto(app.url + "/admin/audit")
        await expect(editor.get_by_text("'admin' permission")).to_be_visible()

        # The owner sees both sessions and ends the editor's; the editor is out at once.
        await owner.get_by_role("link", name="Sessions").click()
        await owner.get_by_role("button", name="End the session of bob").click()
        await expect(owner.get_by_text("Session ended.")).to_be_visible()
        await editor.goto(app.url + "/admin/")
        await expect(editor.get_by_role("button", name="Sign in")).to_be_visible()

        # The audit log, newest first, filtered by action, and as a CSV download.
        await owner.get_by_role("link", name="Audit log").click()
        first = owner.locator("tbody tr").first
        await expect(first).to_contain_text("session.revoke")
        await expect(owner.get_by_role("cell", name="token.create")).to_be_visible()
        await owner.get_by_label("Action").select_option("signin")
        await owner.get_by_role("button", name="Show").click()
        await expect(owner.locator("tbody tr")).to_have_count(2)
        await owner.screenshot(path=str(ARTIFACTS / "admin-audit.png"), full_page=True)
        async with owner.expect_download() as started:
            await owner.get_by_role("link", name="Download CSV").click()
        download = await started.value
        saved = ARTIFACTS / "audit.csv"
        await download.save_as(saved)
        lines = saved.read_text(encoding="utf-8-sig").splitlines()
        assert lines[0] == "id,time,actor,via,client,action,target,detail"
        assert len(lines) == 3 and all(",signin," in line for line in lines[1:])

        # Disabling the editor.
        await owner.get_by_role("link", name="Admins").click()
        await owner.get_by_role("button", name="Disable bob").click()
        await expect(owner.get_by_text("Admin disabled")).to_be_visible()
        await _sign_in(editor, app.url, "bob", EDITOR_PASSWORD)
        await expect(editor.get_by_text("Wrong username or password.")).to_be_visible()
        await owner_context.close()
        await editor_context.close()
