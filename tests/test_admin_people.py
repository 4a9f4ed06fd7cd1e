"""People by hand: adding one, editing one (name, attributes, lists), finding them by an
attribute, and bulk actions on a search (unsubscribe, erase, add and move to a list)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from support import (
    Running,
    SMTPServer,
    add_people,
    bearer,
    cli,
    make_list,
    sign_in,
    visible,
)

from service.models import ConsentRecord, MailingList, Subscriber, Subscription

ADD = "/api/v1/admin/subscribers"
BULK = "/api/v1/admin/subscribers/bulk"


async def statuses(app: Running, email: str) -> dict[str, str]:
    async with app.db.read() as session:
        rows = await session.execute(
            select(MailingList.slug, Subscription.status)
            .join(Subscription, Subscription.list_id == MailingList.id)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email == email)
        )
        return {slug: str(status) for slug, status in rows}


async def post(app: Running, token: str, path: str, body: Any) -> Any:
    return await app.client.post(path, json=body, headers=bearer(token))


async def test_an_added_person_gets_a_confirmation_email_unless_consent_is_recorded(
    admin: Running, token: str, smtp: SMTPServer
) -> None:
    await make_list(admin.settings, "weekly")
    added = await post(
        admin,
        token,
        ADD,
        {
            "email": "Nora@Example.com",
            "name": "Nora Ünal",
            "attributes": {"city": "Köln", "plan": "pro", "seats": 3},
            "lists": ["daily"],
        },
    )
    assert added.status_code == 201, added.text
    assert added.json()["added"] == {"daily": "pending"}
    [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ["nora@example.com"]
    text = mail.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "the publisher of" in text and "added this address" in text
    assert mail.links["confirm"]

    with_evidence = await post(
        admin,
        token,
        ADD,
        {"email": "fair@example.com", "lists": ["weekly"], "evidence": "Signed at the fair"},
    )
    assert with_evidence.json()["added"] == {"weekly": "confirmed"}
    async with admin.db.read() as session:
        wording = await session.scalar(
            select(ConsentRecord.wording).order_by(ConsentRecord.id.desc()).limit(1)
        )
    assert wording == "Added as confirmed by admin alice. Consent evidence: Signed at the fair"
    assert len(smtp.received) == 1, "no email for a confirmed addition"

    # Found by an attribute, shown on the record.
    found = await admin.client.get(f"{ADD}?q=köln", headers=bearer(token))
    assert [p["email"] for p in found.json()["items"]] == ["nora@example.com"]
    headers = await sign_in(admin)
    record = await admin.client.get(f"/admin/subscribers/{added.json()['id']}", headers=headers)
    assert "Attributes" in record.text and "Köln" in visible(record) and "seats" in record.text


async def test_adding_refuses_what_it_must_and_says_which_field(admin: Running, token: str) -> None:
    await post(admin, token, "/api/v1/admin/blocklist", {"entries": ["spam.example"]})
    await post(admin, token, ADD, {"email": "here@example.com", "lists": ["daily"]})
    here = await admin.client.get(f"{ADD}?q=here", headers=bearer(token))
    erased_id = await post(admin, token, ADD, {"email": "gone@example.com", "lists": ["daily"]})
    await admin.client.delete(f"{ADD}/{erased_id.json()['id']}", headers=bearer(token))
    for body, status, field in (
        ({"email": "here@example.com", "lists": ["daily"]}, 409, "email"),
        ({"email": "Gone+x@example.com", "lists": ["daily"]}, 422, "email"),
        ({"email": "x@mail.spam.example", "lists": ["daily"]}, 422, "email"),
        ({"email": "not an address", "lists": ["daily"]}, 422, "email"),
        ({"email": "a@example.com", "lists": []}, 422, "lists"),
        ({"email": "a@example.com", "lists": ["nope"]}, 422, "lists"),
        ({"email": "a@example.com", "lists": "daily"}, 422, "lists"),
        ({"email": "a@example.com", "lists": ["daily"], "attributes": [1]}, 422, "attributes"),
        (
            {"email": "a@example.com", "lists": ["daily"], "attributes": {"a": {}}},
            422,
            "attributes",
        ),
        ({"email": "a@example.com", "lists": ["daily"], "name": "x\ny"}, 422, "name"),
        ({"email": 5, "lists": ["daily"]}, 422, "email"),
        ({"email": "a@example.com", "lists": ["daily"], "evidence": "e" * 501}, 422, "evidence"),
        ({"email": "a@example.com", "lists": ["daily"], "evidence": "a\x00b"}, 422, "evidence"),
        (
            {"email": "a@example.com", "lists": ["daily"], "attributes": {"k": "\x00"}},
            422,
            "attributes",
        ),
    ):
        response = await post(admin, token, ADD, body)
        assert response.status_code == status, (body, response.text)
        assert field in response.json().get("fields", {}), (body, response.json())
    assert (await admin.client.get(f"{ADD}?q=a%40example", headers=bearer(token))).json()[
        "items"
    ] == []
    assert len(here.json()["items"]) == 1


async def test_editing_a_person_never_brings_back_an_opt_out(
    admin: Running, token: str, smtp: SMTPServer
) -> None:
    await make_list(admin.settings, "weekly")
    made = await post(
        admin, token, ADD, {"email": "jo@example.com", "lists": ["daily"], "evidence": "phone"}
    )
    person = f"{ADD}/{made.json()['id']}"
    edited = await admin.client.patch(
        person,
        json={"name": "Jo Smith", "attributes": {"tier": "gold"}, "lists": ["weekly"]},
        headers=bearer(token),
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["removed"] == ["daily"] and edited.json()["added"] == {"weekly": "pending"}
    await smtp.wait_for(1)
    assert await statuses(admin, "jo@example.com") == {
        "daily": "unsubscribed",
        "weekly": "pending",
    }
    back = await admin.client.patch(
        person, json={"lists": ["daily", "weekly"], "evidence": "asked"}, headers=bearer(token)
    )
    assert back.json()["not_added"] == {
        "daily": "unsubscribed earlier; only they can subscribe again"
    }
    assert await statuses(admin, "jo@example.com") == {
        "daily": "unsubscribed",
        "weekly": "pending",
    }
    shown = (await admin.client.get(person, headers=bearer(token))).json()
    assert shown["name"] == "Jo Smith" and shown["attributes"] == {"tier": "gold"}
    # Only the name: everything else stays.
    await admin.client.patch(person, json={"name": ""}, headers=bearer(token))
    shown = (await admin.client.get(person, headers=bearer(token))).json()
    assert shown["name"] is None and shown["attributes"] == {"tier": "gold"}
    for body in ({"name": 3}, {"attributes": "x"}, {"lists": [1]}):
        assert (
            await admin.client.patch(person, json=body, headers=bearer(token))
        ).status_code == 422
    missing = await admin.client.patch(f"{ADD}/999", json={"name": "x"}, headers=bearer(token))
    assert missing.status_code == 404


async def test_the_add_and_edit_pages_keep_what_was_typed(admin: Running, smtp: SMTPServer) -> None:
    headers = await sign_in(admin)
    form = await admin.client.get("/admin/subscribers/new", headers=headers)
    assert form.status_code == 200 and 'name="lists" value="daily"' in form.text
    bad = await admin.client.post(
        "/admin/subscribers/new",
        data={"email": "zoë@example.com", "name": "Zoë", "attributes": "{oops", "lists": "daily"},
        headers=headers,
    )
    assert bad.status_code == 422
    assert 'id="attributes" name="attributes" aria-invalid="true"' in bad.text
    assert "must be a JSON object" in visible(bad) and 'value="Zoë"' in bad.text
    done = await admin.client.post(
        "/admin/subscribers/new",
        data={
            "email": "zoë@example.com",
            "name": "Zoë",
            "attributes": '{"a": 1}',
            "lists": "daily",
        },
        headers=headers,
    )
    assert done.status_code == 303
    record = done.headers["location"]
    page = await admin.client.get(record + "/edit", headers=headers)
    assert 'value="Zoë"' in page.text and "checked" in page.text
    saved = await admin.client.post(
        record + "/edit", data={"name": "Zoe", "attributes": '{"a": 2}'}, headers=headers
    )
    assert "Saved: unsubscribed from daily." in visible(saved)
    again = await admin.client.get(record + "/edit", headers=headers)
    assert "only they can subscribe again" in visible(again)


async def test_bulk_actions_say_how_many_first_and_do_no_more(
    admin: Running, token: str, smtp: SMTPServer
) -> None:
    await add_people(admin)  # 15 people on daily
    await make_list(admin.settings, "weekly")

    async def bulk(**body: Any) -> Any:
        return await post(admin, token, BULK, body)

    planned = await bulk(action="unsubscribe", filters={"list": "daily", "q": "@example.com"})
    assert planned.json()["matching"] == 15 and planned.json()["done"] is False
    assert "Unsubscribe 15 people from" in planned.json()["description"]
    wrong = await bulk(action="unsubscribe", filters={"list": "daily"}, expected=14)
    assert wrong.status_code == 409 and "matches 15 people, not 14" in wrong.json()["message"]
    assert await statuses(admin, "a@example.com") == {"daily": "confirmed"}

    moved = await bulk(
        action="move",
        filters={"list": "daily", "q": "a@"},
        target="weekly",
        evidence="Both lists on one form",
        expected=1,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["changed"] == 1
    assert await statuses(admin, "a@example.com") == {
        "daily": "unsubscribed",
        "weekly": "confirmed",
    }
    added = await bulk(action="add", filters={"q": "b@"}, target="weekly", expected=1)
    assert "each sent a confirmation email" in added.json()["description"]
    await smtp.wait_for(1)

    # Everyone with a confirmed subscription (a on weekly now): from every list.
    done = await bulk(action="unsubscribe", filters={"status": "confirmed"}, expected=12)
    assert done.json()["changed"] == 12, done.json()
    assert await statuses(admin, "c@example.com") == {"daily": "unsubscribed"}
    assert await statuses(admin, "b@example.com") == {
        "daily": "unsubscribed",
        "weekly": "unsubscribed",
    }

    erased = await bulk(action="erase", filters={"q": "unal"}, expected=0)
    assert erased.json()["changed"] == 0
    erased = await bulk(action="erase", filters={"q": "Waiting"}, expected=1)
    assert erased.json()["changed"] == 1
    async with admin.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Subscriber)) == 14

    # NUL is no character anyone's address or name holds: a search for it finds everyone.
    nul = await bulk(action="unsubscribe", filters={"q": "\x00", "list": "\x00daily"})
    assert nul.status_code == 200 and nul.json()["matching"] == 14, nul.text
    for body, field in (
        ({"action": "explode"}, "action"),
        ({"action": "add", "target": "nope"}, "target"),
        ({"action": "move", "target": "weekly"}, "list"),
        ({"action": "add", "filters": {"list": "weekly"}, "target": "weekly"}, "target"),
        ({"action": "add", "filters": "x"}, "filters"),
        ({"action": "erase", "expected": "3"}, "expected"),
    ):
        refused = await post(admin, token, BULK, body)
        assert refused.status_code == 422, (body, refused.text)
        assert field in refused.json().get("fields", {}), (body, refused.json())


async def test_bulk_erase_in_the_admin_asks_with_the_count(admin: Running) -> None:
    await add_people(admin)
    headers = await sign_in(admin)
    page = await admin.client.get("/admin/subscribers?q=%22", headers=headers)
    assert 'action="/admin/subscribers/bulk"' in page.text
    asked = await admin.client.post(
        "/admin/subscribers/bulk", data={"action": "erase", "q": "Smith"}, headers=headers
    )
    assert asked.status_code == 200
    assert "Yes, delete all data of 1 person" in visible(asked)
    assert 'name="expected" value="1"' in asked.text
    async with admin.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Subscriber)) == 15
    erased = await admin.client.post(
        "/admin/subscribers/bulk",
        data={"action": "erase", "q": "Smith", "expected": "1", "confirm": "yes"},
        headers=headers,
    )
    assert "All data of 1 person was deleted." in visible(erased)
    assert "a@example.com" in visible(erased)
    again = await admin.client.post(
        "/admin/subscribers/bulk",
        data={"action": "erase", "q": "Smith", "expected": "1", "confirm": "yes"},
        headers=headers,
    )
    assert again.status_code == 409 and "matches 0 people, not 1" in visible(again)
    unused = cli  # the command line has no bulk actions: the admin pages and API do
    del unused


async def test_the_dashboard_shows_unsubscribes_beside_signups(
    admin: Running, token: str, smtp: SMTPServer
) -> None:
    for email in ("one@example.com", "two@example.com"):
        await post(admin, token, ADD, {"email": email, "lists": ["daily"], "evidence": "fair"})
    await post(admin, token, ADD, {"email": "three@example.com", "lists": ["daily"]})
    await post(
        admin, token, BULK, {"action": "unsubscribe", "filters": {"q": "two@"}, "expected": 1}
    )
    stats = (await admin.client.get("/api/v1/admin/stats", headers=bearer(token))).json()
    today = stats["daily"][-1]
    assert (today["signups"], today["confirmations"], today["unsubscribes"]) == (3, 2, 1)
    headers = await sign_in(admin)
    page = await admin.client.get("/admin/", headers=headers)
    assert f"<title>{today['day']}: 1 unsubscribes</title>" in page.text
    assert f"<title>{today['day']}: 3 signups</title>" in page.text
    assert "Signups, confirmations and unsubscribes, last 30 days" in page.text
