"""The blocklist: addresses and domains no signup, import or admin adds, and a signup that
is answered like any other so nobody learns what is blocked."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from support import (
    SUBSCRIBE,
    Running,
    SMTPServer,
    bearer,
    cli,
    sign_in,
    signups_acted_on,
    visible,
)

from service.models import OutboxMessage, Subscriber

ORIGIN = {"Origin": "https://www.example.com"}


async def block(app: Running, token: str, *entries: str, note: str = "") -> list[dict[str, str]]:
    response = await app.client.post(
        "/api/v1/admin/blocklist",
        json={"entries": list(entries), "note": note},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    added: list[dict[str, str]] = response.json()["added"]
    return added


async def people(app: Running) -> set[str]:
    async with app.db.read() as session:
        return set(await session.scalars(select(Subscriber.email)))


async def test_blocked_signups_get_the_usual_answer_and_no_email(
    admin: Running, token: str, smtp: SMTPServer
) -> None:
    added = await block(admin, token, "spam.example", "Jane.Doe+x@GoogleMail.com", note="abuse")
    assert [(e["kind"], e["value"]) for e in added] == [
        ("domain", "spam.example"),
        ("address", "janedoe@gmail.com"),
    ]

    async def answer(email: str) -> tuple[int, bytes]:
        response = await admin.client.post(SUBSCRIBE, json={"email": email}, headers=ORIGIN)
        return response.status_code, response.content

    normal = await answer("reader@example.com")
    assert normal[0] == 202
    for blocked in (
        "someone@spam.example",
        "someone@news.SPAM.example",  # a subdomain
        "j.a.n.e.doe+news@gmail.com",  # another spelling of the blocked inbox
        "JaneDoe@googlemail.com",
    ):
        assert await answer(blocked) == normal, f"the answer for {blocked} gives it away"
    await signups_acted_on(admin.db)
    [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ["reader@example.com"]
    assert await people(admin) == {"reader@example.com"}
    # Not blocked: a lookalike domain, and an unrelated inbox at the same provider.
    assert await answer("someone@notspam.example") == normal
    assert await answer("jane.doe2@gmail.com") == normal
    await smtp.wait_for(3)

    listed = await admin.client.get("/api/v1/admin/blocklist?q=SPAM", headers=bearer(token))
    [entry] = listed.json()["items"]
    assert entry["value"] == "spam.example" and entry["note"] == "abuse"
    assert entry["created_by"] == "alice"
    gone = await admin.client.delete(
        f"/api/v1/admin/blocklist/{entry['id']}", headers=bearer(token)
    )
    assert gone.status_code == 204
    again = await admin.client.delete(
        f"/api/v1/admin/blocklist/{entry['id']}", headers=bearer(token)
    )
    assert again.status_code == 404
    await answer("back@spam.example")
    await smtp.wait_for(4)


async def test_bad_entries_are_refused_whole(admin: Running, token: str) -> None:
    for body, says in (
        ({"entries": ["ok.example", "not an entry"]}, "'not an entry' is neither"),
        ({"entries": ["a@@b"]}, "a@@b"),
        ({"entries": []}, "entries must be a list"),
        ({"entries": "spam.example"}, "entries must be a list"),
        ({"entries": [1]}, "entries must be a list"),
        ({"entries": ["x.example"], "note": 5}, "note must be text"),
    ):
        response = await admin.client.post(
            "/api/v1/admin/blocklist", json=body, headers=bearer(token)
        )
        assert response.status_code == 422, body
        assert says in response.json()["message"], response.json()
    listed = await admin.client.get("/api/v1/admin/blocklist", headers=bearer(token))
    assert listed.json()["items"] == [], "nothing of a refused request was added"
    # Adding the same entry twice is harmless: the second time adds nothing.
    [noted] = await block(admin, token, "Über.example", note="a\x00b\nc")
    assert noted["note"] == "ab c" and noted["value"] == "über.example"
    assert await block(admin, token, "@über.EXAMPLE", "*.über.example") == []
    wrong = await admin.client.post(
        "/api/v1/admin/blocklist", content=b"spam.example", headers=bearer(token)
    )
    assert wrong.status_code == 415


async def test_imports_count_blocked_rows_and_leave_them_out(admin: Running, token: str) -> None:
    await block(admin, token, "spam.example", "blocked@example.com")
    body = (
        b"email,name\r\n"
        b"fine@example.com,Fine\r\n"
        b"x@mail.spam.example,Spam\r\n"
        b"Blocked+tag@Example.com,Blocked\r\n"
    )
    response = await admin.client.post(
        "/api/v1/admin/lists/daily/imports",
        content=body,
        params={"mode": "confirmed", "reason": "Signed up at the fair"},
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    report = response.json()
    assert (report["confirmed"], report["blocklisted"]) == (1, 2)
    assert {"line": 3, "message": "x@mail.spam.example is blocklisted: not imported"} in report[
        "notes"
    ]
    assert await people(admin) == {"fine@example.com"}


async def test_the_blocklist_page(admin: Running) -> None:
    headers = await sign_in(admin)
    page = await admin.client.get("/admin/blocklist", headers=headers)
    assert page.status_code == 200 and "No entries." in visible(page)
    bad = await admin.client.post(
        "/admin/blocklist",
        data={"entries": "good.example\nnot valid", "note": "n"},
        headers=headers,
    )
    assert bad.status_code == 422
    text = visible(bad)
    assert 'aria-invalid="true"' in bad.text and "'not valid' is neither" in text
    assert "good.example\nnot valid" in text, "what was typed is kept"
    posted = await admin.client.post(
        "/admin/blocklist",
        data={"entries": "good.example\nsomeone@example.com", "note": "spam run"},
        headers=headers,
    )
    assert posted.status_code == 303
    done = await admin.client.get(posted.headers["location"], headers=headers)
    text = visible(done)
    assert "2 entries added." in text and "good.example" in text and "spam run" in text
    [entry_id] = re.findall(r'/admin/blocklist/(\d+)/remove"><button [^>]*"Remove good', done.text)
    for says in ("Entry removed.", "That entry was removed already."):
        removed = await admin.client.post(f"/admin/blocklist/{entry_id}/remove", headers=headers)
        shown = await admin.client.get(removed.headers["location"], headers=headers)
        assert says in visible(shown)
    assert "good.example" not in visible(shown)


async def test_the_blocklist_command(admin: Running) -> None:
    added = await cli(["blocklist", "add", "spam.example", "x@example.com"], admin.settings)
    assert added.returncode == 0, added.stderr
    assert b"blocked domain spam.example" in added.stdout
    bad = await cli(["blocklist", "add", "nope nope"], admin.settings)
    assert bad.returncode == 1 and b"nothing was added" in bad.stderr
    shown = await cli(["blocklist", "list"], admin.settings)
    assert b"spam.example" in shown.stdout and b"x@example.com" in shown.stdout
    removed = await cli(["blocklist", "remove", "X+y@Example.com"], admin.settings)
    assert removed.returncode == 0 and b"removed address x@example.com" in removed.stdout
    shown = await cli(["blocklist", "list"], admin.settings)
    assert b"x@example.com" not in shown.stdout


async def test_an_old_link_of_a_blocked_address_subscribes_no_one_again(
    admin: Running, token: str, smtp: SMTPServer
) -> None:
    await admin.client.post(SUBSCRIBE, json={"email": "back@example.com"}, headers=ORIGIN)
    [first] = await smtp.wait_for(1)
    confirm = admin.local(first.links["confirm"])
    await admin.client.post(confirm)
    await admin.client.post(admin.local(first.links["unsubscribe"]))
    await block(admin, token, "back@example.com")
    again = await admin.client.post(confirm)
    assert again.status_code == 303 and "/thanks" in again.headers["location"]  # as usual
    found = await admin.client.get("/api/v1/admin/subscribers?q=back", headers=bearer(token))
    assert found.json()["items"][0]["lists"] == [{"list": "daily", "status": "unsubscribed"}]
    async with admin.db.read() as session:
        queued = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert queued == 1, "no new confirmation email"
