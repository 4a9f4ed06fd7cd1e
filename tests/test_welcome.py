"""The welcome email: once after a first confirmation, never after a re-confirmation, with
the list's own text (escaped), the same one-click unsubscribe headers, edited in the admin
with a preview."""

from __future__ import annotations

from sqlalchemy import select
from support import (
    SUBSCRIBE,
    Running,
    SMTPServer,
    bearer,
    cli,
    make_list,
    serve_app,
    sign_in,
    visible,
)

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.models import OutboxMessage
from service.settings import Settings

WELCOME = "/api/v1/admin/lists/daily/welcome"
TEXT = {
    "enabled": True,
    "subject": "Willkommen, {name}!",
    "body": "Hallo {name},\n\nschön, dass Sie {list} lesen.\nZweite Zeile.\n\n<b>nicht fett</b>",
}


async def _welcomes(app: Running) -> list[OutboxMessage]:
    async with app.db.read() as session:
        rows = await session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "welcome")
        )
        return list(rows)


async def _subscribe(app: Running, email: str, name: str | None = None) -> None:
    response = await app.client.post(
        SUBSCRIBE,
        json={"email": email, **({"name": name} if name else {})},
        headers={"Origin": "https://www.example.com"},
    )
    assert response.status_code == 202


async def test_welcome_once_after_the_first_confirmation(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    async with serve_app(settings) as app:
        await create_user(app.db, "alice", "correct horse battery")
        auth = bearer(await create_token(app.db, "alice", "t"))
        saved = await app.client.put(WELCOME, json=TEXT, headers=auth)
        assert saved.status_code == 200, saved.text
        assert saved.json()["subject"] == TEXT["subject"] and saved.json()["enabled"] is True

        await _subscribe(app, "zoe@example.com", "Zoë")
        [confirmation] = await smtp.wait_for(1)
        assert (await app.client.post(app.local(confirmation.links["confirm"]))).status_code == 303
        _, mail = await smtp.wait_for(2)
        message = mail.message
        assert message["Subject"] == "Willkommen, Zoë!"
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        assert text is not None and html is not None
        assert "Hallo Zoë,\n\nschön, dass Sie Frühstücks-Briefing lesen.\nZweite Zeile." in (
            text.get_content().replace("\r\n", "\n")
        )
        assert "<b>nicht fett</b>" not in html.get_content()
        assert "&lt;b&gt;nicht fett&lt;/b&gt;" in html.get_content()
        assert "Zweite Zeile." in html.get_content()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Unsubscribe"] == f"<{mail.links['unsubscribe']}>"

        # Out, and back in: the re-confirmation gets no second welcome.
        left = await app.client.post(
            app.local(mail.links["unsubscribe"]), data={"List-Unsubscribe": "One-Click"}
        )
        assert left.status_code == 200
        await _subscribe(app, "zoe@example.com")
        *_, again = await smtp.wait_for(3)
        assert again.links["confirm"]
        assert (await app.client.post(app.local(again.links["confirm"]))).status_code == 303
        # Queued in the confirmation's own transaction: none now means none ever.
        assert len(await _welcomes(app)) == 1


async def test_no_welcome_unless_turned_on_and_the_builtin_text(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings, language="de")
    async with serve_app(settings) as app:
        await _subscribe(app, "a@example.com")
        [first] = await smtp.wait_for(1)
        await app.client.post(app.local(first.links["confirm"]))
        assert await _welcomes(app) == []
        result = await cli(["welcome", "set", "daily", "--on"], settings)
        assert result.returncode == 0, result.stderr
        await _subscribe(app, "b@example.com")
        *_, second = await smtp.wait_for(2)
        await app.client.post(app.local(second.links["confirm"]))
        *_, welcome = await smtp.wait_for(3)
        assert welcome.message["Subject"] == "Sie haben Frühstücks-Briefing abonniert"
        shown = await cli(["welcome", "show", "daily"], settings)
        assert b"on" in shown.stdout and b"built-in welcome in de" in shown.stdout


async def test_welcome_api_refuses_what_it_cannot_store(settings: Settings) -> None:
    await make_list(settings)
    async with serve_app(settings) as app:
        await create_user(app.db, "alice", "correct horse battery")
        auth = bearer(await create_token(app.db, "alice", "t"))
        for body, says in [
            ({"enabled": True, "subject": "Only a subject"}, "both a subject and a text"),
            ({"enabled": "yes"}, "enabled must be true or false"),
            ({"enabled": True, "subject": 5, "body": "x"}, "must be strings"),
            ({"enabled": True, "subject": "a\nb", "body": "x"}, "one line"),
            ({"enabled": True, "subject": "s", "body": "x" * 10_001}, "longer than"),
        ]:
            refused = await app.client.put(WELCOME, json=body, headers=auth)
            assert refused.status_code == 422, refused.text
            assert says in refused.json()["message"]
        assert (await app.client.put(WELCOME, content=b"x", headers=auth)).status_code == 415
        missing = await app.client.get("/api/v1/admin/lists/nope/welcome", headers=auth)
        assert missing.status_code == 404
        stored = await app.client.get(WELCOME, headers=auth)
        assert stored.json() == {
            "list": "daily",
            "enabled": False,
            "language": "en",
            "subject": "",
            "body": "",
            "texts": {},
        }


async def test_welcome_editor_previews_and_saves(admin: Running) -> None:
    session = await sign_in(admin)
    page = await admin.client.get("/admin/lists/daily/welcome", headers=session)
    assert page.status_code == 200
    assert "You are subscribed to Frühstücks-Briefing" in visible(page)  # the built-in one
    form = {"enabled": "on", "subject": "Hi {name}", "body": "<i>Welcome</i> to {list}"}
    preview = await admin.client.post(
        "/admin/lists/daily/welcome", data={**form, "action": "preview"}, headers=session
    )
    assert preview.status_code == 200
    assert "Hi Ada" in visible(preview)  # the sample subscriber's name
    [frame] = [p for p in preview.text.split('"') if p.startswith("/admin/lists/daily/welcome/")]
    shown = await admin.client.get(frame.replace("&amp;", "&"), headers=session)
    assert shown.status_code == 200
    assert "&lt;i&gt;Welcome&lt;/i&gt; to Frühstücks-Briefing" in shown.text
    assert "sandbox" in shown.headers["content-security-policy"]
    # Previewing stored nothing; saving does.
    assert "Hi {name}" not in visible(
        await admin.client.get("/admin/lists/daily/welcome", headers=session)
    )
    saved = await admin.client.post(
        "/admin/lists/daily/welcome", data={**form, "action": "save"}, headers=session
    )
    assert saved.status_code == 303
    page = await admin.client.get(saved.headers["location"], headers=session)
    assert "Saved." in visible(page) and 'value="Hi {name}"' in page.text
    bad = await admin.client.post(
        "/admin/lists/daily/welcome",
        data={"subject": "Only this", "action": "save"},
        headers=session,
    )
    assert bad.status_code == 422 and "both a subject and a text" in visible(bad)
