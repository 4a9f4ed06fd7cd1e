"""Imports: round trip, line-numbered errors, idempotence, double opt-in, other tools' files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support import (
    PEOPLE,
    Running,
    SMTPServer,
    add_people,
    bearer,
    cli,
    sign_in,
    snapshot,
)

from service.auth.api_tokens import create_token
from service.lists import create_list
from service.models import (
    ConsentAction,
    ConsentRecord,
    MailingList,
    OutboxMessage,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from service.suppressions import email_hash

REASON = "Signed the paper form at the 2024 book fair"


@pytest.fixture
async def token(admin: Running) -> str:
    return await create_token(admin.db, "alice", "tests")


async def list_statuses(app: Running, slug: str) -> dict[str, str]:
    async with app.db.read() as session:
        rows = await session.execute(
            select(Subscriber.email, Subscription.status)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(MailingList.slug == slug)
        )
        return {email: str(status) for email, status in rows}


async def import_csv(
    app: Running, token: str, slug: str, body: bytes, **params: str
) -> dict[str, object]:
    response = await app.client.post(
        f"/api/v1/admin/lists/{slug}/imports",
        params=params,
        content=body,
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


ROUND_TRIP = [p for p in PEOPLE if p[0][0] in "abdefghk=l"]  # names a signup could have


async def test_export_round_trips_through_import(admin: Running, token: str) -> None:
    await add_people(admin, people=ROUND_TRIP)
    exported = await admin.client.get(
        "/api/v1/admin/exports?list=daily&status=confirmed,unsubscribed&bom=1",
        headers=bearer(token),
    )
    assert exported.content.count(b"\r\n") == len(ROUND_TRIP) + 1
    await create_list(admin.db, slug="copy", name="Copy", origins=[])
    report = await import_csv(
        admin, token, "copy", exported.content, mode="confirmed", reason=REASON
    )
    assert report["format"] == "newsletter"
    assert (report["rows"], report["confirmed"], report["unsubscribed"]) == (10, 9, 1)
    assert report["invalid"] == 0 and report["confirmation_sent"] == 0
    again = await admin.client.get(
        "/api/v1/admin/exports?list=copy&status=confirmed,unsubscribed&bom=1",
        headers=bearer(token),
    )
    assert again.content == exported.content.replace(b",daily,", b",copy,")

    async with admin.db.read() as session:
        record = await session.scalar(
            select(ConsentRecord)
            .where(ConsentRecord.action == ConsentAction.CONFIRM)
            .order_by(ConsentRecord.id.desc())
            .limit(1)
        )
    assert record is not None and record.method == "import"
    assert "admin alice" in record.wording and REASON in record.wording
    assert record.page_url == "https://www.example.com/article?id=1,2"

    before = await snapshot(admin.db)
    repeat = await import_csv(
        admin, token, "copy", exported.content, mode="confirmed", reason=REASON
    )
    assert repeat["unchanged"] == 10 and repeat["confirmed"] == repeat["unsubscribed"] == 0
    assert await snapshot(admin.db) == before, "running the same import again changes nothing"


async def test_invalid_rows_are_reported_with_line_numbers(admin: Running, token: str) -> None:
    body = (
        b"email,name,note\r\n"
        b'ok@example.com,Ok,"two\nlines"\r\n'
        b"not-an-email,Bad,\r\n"
        b",Nobody,\r\n"
        b'"=1+2@example.com",Formula,\r\n'
        b'ctrl@example.com,"Bell\x07",\r\n'
        b"\r\n"
        b"OK@Example.com,Again,\r\n"
        b"'-dash@example.com,Dash,\r\n"
    )
    report = await import_csv(admin, token, "daily", body, mode="confirmed", reason=REASON)
    assert report["format"] == "csv"
    assert [(e["line"], e["message"].split(":")[0]) for e in report["errors"]] == [  # type: ignore[attr-defined, index]
        (4, "email"),
        (5, "email"),
        (7, "name"),
    ]
    assert "is required" in report["errors"][1]["message"]  # type: ignore[index]
    assert report["duplicates"] == 1
    assert {"line": 9, "message": "ok@example.com already on line 2"} in report["notes"]  # type: ignore[operator]
    assert await list_statuses(admin, "daily") == {
        "ok@example.com": "confirmed",
        "=1+2@example.com": "confirmed",
        "-dash@example.com": "confirmed",
    }


async def test_double_opt_in_import(admin: Running, token: str, smtp: SMTPServer) -> None:
    await add_people(
        admin, people=[p for p in PEOPLE if p[0] in {"a@example.com", "l@example.com"}]
    )
    async with admin.db.write() as session:
        session.add(Suppression(email_hash=email_hash("erased@example.com"), reason="erased"))
    rows = [f"new{i}@example.com,Reader {i}" for i in range(700)]  # larger than a form post
    body = "\r\n".join(
        ["email,name", "a@example.com,A", "l@example.com,L", "erased@example.com,E", *rows]
    ).encode()
    assert len(body) > admin.settings.max_body_bytes
    report = await import_csv(admin, token, "daily", body)
    assert report["confirmation_sent"] == 700
    assert (report["unchanged"], report["left_unsubscribed"], report["suppressed"]) == (1, 1, 1)
    notes = [n["message"] for n in report["notes"]]  # type: ignore[attr-defined]
    assert "l@example.com unsubscribed from this list earlier: left unsubscribed" in notes
    assert "erased@example.com was erased earlier and stays suppressed" in notes
    found = await list_statuses(admin, "daily")
    assert found["a@example.com"] == "confirmed" and found["l@example.com"] == "unsubscribed"
    assert found["new7@example.com"] == "pending" and "erased@example.com" not in found
    received = await smtp.wait_for(700, timeout=180)
    assert {r.rcpt_tos[0] for r in received} == {f"new{i}@example.com" for i in range(700)}
    text = received[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "/confirm/" in text
    # Told how the address came to be there, not that they typed it into a form.
    assert "signup form" not in text and "brought along" in " ".join(text.split())

    repeat = await import_csv(admin, token, "daily", body)
    assert repeat["confirmation_sent"] == 0 and repeat["unchanged"] == 701
    async with admin.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 700


MAILCHIMP_SUBSCRIBED = (
    "\ufeffEmail Address,First Name,Last Name,Address,Phone Number,MEMBER_RATING,OPTIN_TIME,"
    "OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,"
    "LAST_CHANGED,LEID,EUID,NOTES,TAGS\r\n"
    "mc1@example.com,Ada,Lovelace,,,2,2023-05-01 10:00:00,,2023-05-01 10:05:00,1.2.3.4,,,,,,,,"
    '2023-05-01 10:05:00,1,abc,,"""vip"""\r\n'
    "mc2@example.com,Grace,,,,2,,,,,,,,,,,,,2,abd,,\r\n"
)
MAILCHIMP_UNSUBSCRIBED = (
    "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,CONFIRM_TIME,UNSUB_TIME,"
    "UNSUB_CAMPAIGN_TITLE,UNSUB_REASON\r\n"
    "mc3@example.com,Lin,,2,2022-01-01 00:00:00,2022-01-01 00:01:00,2023-02-03 04:05:06,"
    "Weekly,No longer interested\r\n"
)
MAILCHIMP_CLEANED = (
    "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,CONFIRM_TIME,CLEAN_TIME,"
    "CLEAN_CAMPAIGN_TITLE\r\n"
    "mc4@example.com,Bo,,1,,,2023-03-03 00:00:00,Weekly\r\n"
)
LISTMONK = (
    "uuid,email,name,attributes,status,created_at,updated_at\r\n"
    'a1,lm1@example.com,Ken,"{""city"": ""Oslo""}",enabled,2024-01-01 00:00:00,'
    "2024-01-01 00:00:00\r\n"
    "a2,lm2@example.com,Blocked,{},blocklisted,2024-01-01 00:00:00,2024-01-01 00:00:00\r\n"
)


async def test_mailchimp_and_listmonk_exports(admin: Running, token: str) -> None:
    imported = [
        await import_csv(admin, token, "daily", text.encode(), mode="confirmed", reason=REASON)
        for text in (MAILCHIMP_SUBSCRIBED, MAILCHIMP_UNSUBSCRIBED, MAILCHIMP_CLEANED, LISTMONK)
    ]
    assert [r["format"] for r in imported] == ["mailchimp"] * 3 + ["listmonk"]
    assert imported[2]["failed_in_file"] == 1
    assert await list_statuses(admin, "daily") == {
        "mc1@example.com": "confirmed",
        "mc2@example.com": "confirmed",
        "mc3@example.com": "unsubscribed",
        "lm1@example.com": "confirmed",
        "lm2@example.com": "unsubscribed",
    }
    exported = await admin.client.get(
        "/api/v1/admin/exports?list=daily&status=all&format=ndjson", headers=bearer(token)
    )
    people = {o["email"]: o for o in map(json.loads, exported.text.splitlines())}
    assert people["mc1@example.com"]["name"] == "Ada Lovelace"
    assert people["mc1@example.com"]["subscribed_at"] == "2023-05-01T10:00:00Z"
    assert people["mc1@example.com"]["confirmed_at"] == "2023-05-01T10:05:00Z"
    assert people["mc3@example.com"]["unsubscribed_at"] == "2023-02-03T04:05:06Z"
    assert people["lm1@example.com"]["attributes"] == {"city": "Oslo"}

    # Our own Mailchimp and listmonk layouts come back in as well.
    await create_list(admin.db, slug="copy", name="Copy", origins=[])
    for fmt in ("mailchimp", "listmonk"):
        layout = await admin.client.get(
            f"/api/v1/admin/exports?list=daily&format={fmt}", headers=bearer(token)
        )
        report = await import_csv(
            admin, token, "copy", layout.content, mode="confirmed", reason=REASON
        )
        assert report["format"] == fmt and report["invalid"] == 0
    assert set(await list_statuses(admin, "copy")) == {
        "mc1@example.com",
        "mc2@example.com",
        "lm1@example.com",
    }


async def test_bad_files_and_options(admin: Running, token: str) -> None:
    async def post(body: bytes, content_type: str = "text/csv", **params: str) -> tuple[int, str]:
        response = await admin.client.post(
            "/api/v1/admin/lists/daily/imports",
            params=params,
            content=body,
            headers={**bearer(token), "Content-Type": content_type},
        )
        return response.status_code, response.json()["message"]

    status, message = await post(b"name,phone\r\nx,y\r\n")
    assert status == 422 and "header naming an email column" in message
    status, message = await post(b"email\r\n\xff\xfe@example.com\r\n")
    assert status == 422 and "not UTF-8" in message
    status, message = await post(b"")
    assert status == 422 and "empty" in message
    status, message = await post(b"email\r\na@example.com\r\n", mode="confirmed")
    assert status == 422 and "reason" in message
    status, message = await post(b"email\r\na@example.com\r\n", mode="sideways")
    assert status == 422 and "mode must be" in message
    status, message = await post(b'{"email": "a@example.com"}', "application/json")
    assert status == 415
    missing = await admin.client.post(
        "/api/v1/admin/lists/nope/imports",
        content=b"email\r\na@example.com\r\n",
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    assert missing.status_code == 404
    assert await list_statuses(admin, "daily") == {}


async def test_admin_upload(admin: Running) -> None:
    session = await sign_in(admin)
    cookie = {"Cookie": session["Cookie"]}
    files = {"file": ("readers.csv", b"email,name\r\nup@example.com,Up\r\nbad,Bad\r\n", "text/csv")}
    form = {"list": "daily", "mode": "confirmed", "reason": REASON}

    for extra in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example.net"}, {}):
        refused = await admin.client.post(
            "/admin/imports", data=form, files=files, headers={**cookie, **extra}
        )
        assert refused.status_code == 403, extra
    assert await list_statuses(admin, "daily") == {}

    unreasoned = await admin.client.post(
        "/admin/imports", data={**form, "reason": ""}, files=files, headers=session
    )
    assert unreasoned.status_code == 422 and "reason" in unreasoned.text
    done = await admin.client.post("/admin/imports", data=form, files=files, headers=session)
    assert done.status_code == 200
    assert "1 subscribed as confirmed" in done.text and "line 3: email:" in done.text
    assert await list_statuses(admin, "daily") == {"up@example.com": "confirmed"}
    async with admin.db.read() as session_:
        wording = await session_.scalar(select(ConsentRecord.wording))
    assert wording is not None and "from readers.csv" in wording and REASON in wording


async def test_cli_import(admin: Running, tmp_path: Path) -> None:
    source = tmp_path / "readers.csv"
    source.write_text("email,name\nc1@example.com,C One\nc2@example.com,\nnope,\n")
    done = await cli(
        ["import", "--list", "daily", str(source), "--confirmed", "--reason", REASON],
        admin.settings,
    )
    assert done.returncode == 1, done.stderr  # one invalid row
    out = done.stdout.decode()
    assert "2 subscribed as confirmed" in out and "line 4: email:" in out
    unreasoned = await cli(
        ["import", "--list", "daily", str(source), "--confirmed"], admin.settings
    )
    assert unreasoned.returncode == 2 and b"--reason" in unreasoned.stderr
    source.write_text("email\nc3@example.com\nc1@example.com\n")
    doi = await cli(["import", "--list", "daily", str(source)], admin.settings)
    assert doi.returncode == 0, doi.stderr
    assert b"1 sent a confirmation email" in doi.stdout and b"1 already on the list" in doi.stdout
    assert await list_statuses(admin, "daily") == {
        "c1@example.com": "confirmed",
        "c2@example.com": "confirmed",
        "c3@example.com": "pending",
    }
    async with admin.db.read() as session:
        status = await session.scalar(select(Subscription.status).where(Subscription.id == 3))
    assert status == SubscriptionStatus.PENDING
