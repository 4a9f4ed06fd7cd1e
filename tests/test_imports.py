"""Imports: round trip, line-numbered errors, idempotence, double opt-in, other tools' files."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from support import (
    PASSWORD,
    PEOPLE,
    T1,
    Running,
    SMTPServer,
    add_people,
    bearer,
    clear_of_window_end,
    cli,
    make_list,
    serve_app,
    sign_in,
    snapshot,
)

from service import limits
from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.db import run
from service.lists import create_list
from service.models import (
    ConsentAction,
    ConsentRecord,
    MailingList,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    utcnow,
)
from service.settings import Settings, parse_rates
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


async def stored(app: Running) -> dict[str, object]:
    """What an import may write: every table but the caller's token and the keys."""
    tables = await snapshot(app.db)
    return {k: v for k, v in tables.items() if k not in {"api_tokens", "meta"}}


ROUND_TRIP = [p for p in PEOPLE if p[0][0] in "abdefghk=l"]  # names a signup could have


async def add_evidence(app: Running) -> None:
    """Consent evidence as signups and confirmations leave it: an IP address, a user agent
    (one a spreadsheet would run, too) and the words shown, for every confirmed person."""
    async with app.db.write() as session:
        subscriptions = await session.execute(
            select(Subscription.id, Subscriber.email)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscription.status == SubscriptionStatus.CONFIRMED)
        )
        for sub_id, email in subscriptions:
            await session.execute(
                update(ConsentRecord)
                .where(ConsentRecord.subscription_id == sub_id)
                .values(ip_address="2001:db8::1", user_agent="=cmd|' /C calc'!A0")
            )
            session.add(
                ConsentRecord(
                    subscription_id=sub_id,
                    action=ConsentAction.CONFIRM,
                    created_at=T1,
                    ip_address="203.0.113.9",
                    user_agent=f"Mozilla/5.0 ({email})",
                    wording='Confirmation page: "Subscribe?" Pressed: "Yes, «subscribe»".',
                    method="confirm-page",
                )
            )


async def test_export_round_trips_through_import(admin: Running, token: str) -> None:
    await add_people(admin, people=ROUND_TRIP)
    await add_evidence(admin)
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
    # Byte for byte, the consent evidence included: the import keeps it as consent records
    # (the person's own), beside its own note of the import.
    assert b"203.0.113.9" in exported.content and b"'=cmd" in exported.content
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

    before = await stored(admin)
    repeat = await import_csv(
        admin, token, "copy", exported.content, mode="confirmed", reason=REASON
    )
    assert repeat["unchanged"] == 10 and repeat["confirmed"] == repeat["unsubscribed"] == 0
    assert await stored(admin) == before, "running the same import again changes nothing"


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
    status, message = await post("email,name\r\nz@example.com,Zoë\r\n".encode() + b"\xff@x\r\n")
    assert status == 422 and message.startswith("line 3: byte 0xff is not UTF-8")
    status, message = await post(b"\xff\xfee\x00m\x00\r\x00\n\x00\x00\xd8")
    assert status == 422 and message.startswith("line 2:") and "UTF-16" in message
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

    dry = await admin.client.post(
        "/admin/imports", data={**form, "dry_run": "1"}, files=files, headers=session
    )
    assert dry.status_code == 200 and "Dry run: nothing was written" in dry.text
    assert "1 subscribed as confirmed" in dry.text
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


async def test_a_file_broken_near_its_end_writes_nothing(admin: Running, token: str) -> None:
    """1,201 rows, the last with one Latin-1 byte in a file that is UTF-8 otherwise: refused
    whole, naming line 1,202 (counted as an editor counts, a quoted cell spanning two)."""
    rows = [f"r{i}@example.com,Reader {i}" for i in range(1, 1201)]
    rows[0] = "r1@example.com,Zoë"
    body = ("email,name\r\n" + "\r\n".join(rows) + "\r\n").encode() + b"m@example.com,M\xfcller\r\n"
    before = await stored(admin)
    response = await admin.client.post(
        "/api/v1/admin/lists/daily/imports",
        params={"mode": "confirmed", "reason": REASON},
        content=body,
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    assert response.status_code == 422
    assert response.json()["message"].startswith("line 1202: byte 0xfc is not UTF-8")
    assert await stored(admin) == before

    # A quoted cell over two lines moves the broken byte to line 1,203.
    multi = body.replace(b"r5@example.com,Reader 5", b'r5@example.com,"Reader\n5"')
    response = await admin.client.post(
        "/api/v1/admin/lists/daily/imports",
        params={"mode": "confirmed", "reason": REASON},
        content=multi,
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    assert response.status_code == 422 and "line 1203:" in response.json()["message"]
    assert await stored(admin) == before

    # A quote left open on the last row, after a thousand good ones: nothing written
    # either (the quote would swallow the rest of the file).
    broken = body.rsplit(b"m@example.com", 1)[0] + b'm@example.com,"M\xc3\xbcller\r\n'
    response = await admin.client.post(
        "/api/v1/admin/lists/daily/imports",
        params={"mode": "confirmed", "reason": REASON},
        content=broken,
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    assert response.status_code == 422
    assert response.json()["message"] == "line 1202: unexpected end of data"
    assert await stored(admin) == before


MAILCHIMP_UNSUBSCRIBED_EXPORT = (
    "Email Address,First Name,Last Name,Address,Phone Number,MEMBER_RATING,OPTIN_TIME,"
    "OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,"
    "UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER,LEID,"
    "EUID,NOTES,TAGS\r\n"
    "here@example.com,Here,Now,,,2,2022-01-01 00:00:00,,2022-01-01 00:01:00,,,,,,,,,"
    "2024-02-03 04:05:06,Weekly,abc123,NORMAL,,11,e1,,\r\n"
    "waiting@example.com,Wait,,,,2,,,,,,,,,,,,2024-02-03 04:05:06,Weekly,abc123,SPAM,,12,e2,,\r\n"
    "gone@example.com,Gone,,,,2,,,,,,,,,,,,2024-02-03 04:05:06,Weekly,abc123,,,13,e3,,\r\n"
    "new@example.com,New,,,,2,,,,,,,,,,,,2024-02-03 04:05:06,Weekly,abc123,,,14,e4,,\r\n"
)


async def test_opt_outs_in_the_file_win(admin: Running, token: str) -> None:
    await import_csv(
        admin,
        token,
        "daily",
        b"email\r\nhere@example.com\r\ngone@example.com\r\n",
        mode="confirmed",
        reason=REASON,
    )
    await import_csv(admin, token, "daily", b"email\r\nwaiting@example.com\r\n")  # pending
    await import_csv(
        admin,
        token,
        "daily",
        MAILCHIMP_UNSUBSCRIBED.replace("mc3@", "gone@").encode(),
        mode="confirmed",
        reason=REASON,
    )
    assert (await list_statuses(admin, "daily"))["gone@example.com"] == "unsubscribed"

    response = await admin.client.post(
        "/api/v1/admin/lists/daily/imports",
        params={"mode": "confirmed", "reason": REASON},
        files={"file": ("unsubscribed_members_export.csv", MAILCHIMP_UNSUBSCRIBED_EXPORT)},
        headers=bearer(token),
    )
    report = response.json()
    assert report["format"] == "mailchimp"
    assert (report["unsubscribed_by_file"], report["unsubscribed"], report["unchanged"]) == (
        2,
        1,
        1,
    )
    assert await list_statuses(admin, "daily") == {
        "here@example.com": "unsubscribed",
        "waiting@example.com": "unsubscribed",
        "gone@example.com": "unsubscribed",
        "new@example.com": "unsubscribed",
    }
    async with admin.db.read() as session:
        wordings = list(
            await session.scalars(
                select(ConsentRecord.wording).where(
                    ConsentRecord.action == ConsentAction.UNSUBSCRIBE,
                    ConsentRecord.method == "import",
                    ConsentRecord.wording.contains("unsubscribed_members_export.csv"),
                )
            )
        )
        outbox = list(await session.scalars(select(OutboxMessage.status)))
    by_file = [w for w in wordings if "marks this address 'unsubscribed'" in w]
    assert len(by_file) == 2 and all("admin alice" in w for w in by_file)
    assert len(outbox) == 1 and "queued" not in map(str, outbox)  # sent, or cancelled

    # Cleaned (Mailchimp), blocklisted (listmonk), unsubscribed (ours): the same.
    await create_list(admin.db, slug="other", name="Other", origins=[])
    people = "".join(f"{w}@example.com\r\n" for w in ("mc4", "lm2", "ours"))
    await import_csv(
        admin, token, "other", b"email\r\n" + people.encode(), mode="confirmed", reason=REASON
    )
    ours = (
        "email,name,list,status,subscribed_at,confirmed_at,unsubscribed_at,consent_source,"
        "attributes\r\nours@example.com,,daily,unsubscribed,,,,,\r\n"
    )
    counts = [
        (await import_csv(admin, token, "other", text.encode()))["unsubscribed_by_file"]
        for text in (MAILCHIMP_CLEANED, LISTMONK, ours)
    ]
    assert counts == [1, 1, 1]
    statuses = await list_statuses(admin, "other")
    assert {statuses[f"{w}@example.com"] for w in ("mc4", "lm2", "ours")} == {"unsubscribed"}
    assert statuses["lm1@example.com"] == "pending"  # new here: asked to confirm
    async with admin.db.read() as session:
        marks = set(
            await session.scalars(
                select(ConsentRecord.wording).where(ConsentRecord.wording.contains("marks this"))
            )
        )
    assert any("'cleaned'" in w for w in marks) and any("'blocklisted'" in w for w in marks)


async def test_excel_and_utf16_files(admin: Running, token: str) -> None:
    excel = b"E-Mail;Name\r\n".replace(b"E-Mail", b"email") + b"mu@example.com;M\xfcller\r\n"
    report = await import_csv(admin, token, "daily", excel, mode="confirmed", reason=REASON)
    assert (report["encoding"], report["delimiter"], report["confirmed"]) == (
        "Windows-1252",
        ";",
        1,
    )
    utf16 = "email\tname\r\nzo@example.com\tZoë Ørsted\r\n".encode("utf-16")
    report = await import_csv(admin, token, "daily", utf16, mode="confirmed", reason=REASON)
    assert (report["encoding"], report["delimiter"], report["confirmed"]) == ("UTF-16", "\t", 1)
    bom = b"\xef\xbb\xbfemail,name\r\nbo@example.com,B\xc3\xb8\r\n"
    report = await import_csv(admin, token, "daily", bom, mode="confirmed", reason=REASON)
    assert (report["encoding"], report["delimiter"]) == ("UTF-8 with BOM", ",")
    exported = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=ndjson", headers=bearer(token)
    )
    names = {o["email"]: o["name"] for o in map(json.loads, exported.text.splitlines())}
    assert names == {
        "mu@example.com": "Müller",
        "zo@example.com": "Zoë Ørsted",
        "bo@example.com": "Bø",
    }


async def test_columns_kept_and_columns_not_kept(admin: Running, token: str) -> None:
    report = await import_csv(
        admin, token, "daily", MAILCHIMP_SUBSCRIBED.encode(), mode="confirmed", reason=REASON
    )
    assert report["columns_not_kept"] == [
        "MEMBER_RATING",
        "GMTOFF",
        "DSTOFF",
        "LAST_CHANGED",
        "LEID",
        "EUID",
    ]
    exported = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=ndjson", headers=bearer(token)
    )
    people = {o["email"]: o for o in map(json.loads, exported.text.splitlines())}
    assert people["mc1@example.com"]["attributes"] == {"TAGS": '"vip"'}
    assert people["mc2@example.com"]["attributes"] == {}
    async with admin.db.read() as session:
        confirm = (
            await session.execute(
                select(ConsentRecord.created_at, ConsentRecord.ip_address).where(
                    ConsentRecord.ip_address.is_not(None)
                )
            )
        ).all()
    assert [(str(t)[:19], ip) for t, ip in confirm] == [("2023-05-01 10:05:00", "1.2.3.4")]

    plain = b"email,name,phone,notes\r\np@example.com,P,+44 1,met at the fair\r\n"
    report = await import_csv(admin, token, "daily", plain, mode="confirmed", reason=REASON)
    assert report["columns_not_kept"] == []
    exported = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=ndjson", headers=bearer(token)
    )
    people = {o["email"]: o for o in map(json.loads, exported.text.splitlines())}
    assert people["p@example.com"]["attributes"] == {"phone": "+44 1", "notes": "met at the fair"}


async def test_dry_run_writes_nothing(admin: Running, token: str, tmp_path: Path) -> None:
    await import_csv(
        admin, token, "daily", b"email\r\nhere@example.com\r\n", mode="confirmed", reason=REASON
    )
    before = await stored(admin)
    body = (
        MAILCHIMP_UNSUBSCRIBED_EXPORT.encode() + b"fresh@example.com,,,,,,,,,,,,,,,,,,,,,,,,,\r\n"
    )
    report = await import_csv(admin, token, "daily", body, dry_run="1")
    assert report["dry_run"] is True
    assert (
        report["unsubscribed_by_file"],
        report["unsubscribed"],
        report["confirmation_sent"],
    ) == (1, 3, 1)
    assert await stored(admin) == before
    source = tmp_path / "unsubscribed.csv"
    source.write_bytes(body)
    done = await cli(["import", "--list", "daily", str(source), "--dry-run"], admin.settings)
    assert done.returncode == 0, done.stderr
    assert b"Dry run: nothing was written" in done.stdout
    assert b"1 on the list here but opted out in the file: unsubscribed" in done.stdout
    assert await stored(admin) == before


async def test_imported_confirmations_follow_the_cap(settings: Settings, smtp: SMTPServer) -> None:
    """A double opt-in import sends no more confirmations than the service-wide cap has
    room for; the rest wait in the outbox, counted in the next window, and go out then."""
    await make_list(settings)
    await clear_of_window_end(3600)
    capped = settings.replace(rate_limit_confirmations=parse_rates("5/1h"))
    async with serve_app(capped) as app:
        await create_user(app.db, "alice", PASSWORD)
        token = await create_token(app.db, "alice", "tests")
        body = "\r\n".join(["email", *(f"cap{i}@example.com" for i in range(12))]).encode()
        report = await import_csv(app, token, "daily", body)
        assert (report["confirmation_sent"], report["confirmation_waiting"]) == (5, 7)
        assert set((await list_statuses(app, "daily")).values()) == {"pending"}
        await smtp.wait_for(5)
        await asyncio.sleep(0.5)  # the worker has had time to send more, if it would
        assert len(smtp.received) == 5

        now = utcnow()
        next_window = datetime.fromtimestamp((now.timestamp() // 3600 + 1) * 3600, UTC)
        after = next_window + timedelta(hours=1)
        async with app.db.read() as session:
            waiting = list(
                await session.scalars(
                    select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.QUEUED)
                )
            )
            rate = capped.rate_limit_confirmations[0]
            assert await run(session, limits.count(limits.CONFIRMATIONS, rate, now)) == 5
            for at, hits in [(next_window, 5), (after, 2)]:  # 5 an hour
                assert await run(session, limits.count(limits.CONFIRMATIONS, rate, at)) == hits
        for message in waiting:  # dated when due, its link valid from then
            due = message.next_attempt_at.replace(tzinfo=UTC)
            assert message.created_at.replace(tzinfo=UTC) == due
            assert message.payload["expires_at"] == int(due.timestamp() + capped.confirm_ttl)
        assert sorted(m.next_attempt_at.replace(tzinfo=UTC) for m in waiting) == [
            *[next_window] * 5,
            *[after] * 2,
        ]

        # When their window comes, the worker sends them: none was lost.
        async with app.db.write() as session:
            await session.execute(update(OutboxMessage).values(next_attempt_at=now))
        received = await smtp.wait_for(12)
        assert {r.rcpt_tos[0] for r in received} == {f"cap{i}@example.com" for i in range(12)}


async def test_update_existing_names_and_attributes(
    admin: Running, token: str, tmp_path: Path
) -> None:
    """On request, people already here get the file's name and attributes; their
    subscriptions keep their status (an opt-out wins)."""
    first = "email,name,city,plan\r\nu1@example.com,Old One,Oslo,free\r\nu2@example.com,Two,,\r\n"
    await import_csv(admin, token, "daily", first.encode(), mode="confirmed", reason=REASON)
    async with admin.db.write() as session:
        await session.execute(
            update(Subscription)
            .where(Subscription.subscriber_id == 2)
            .values(status=SubscriptionStatus.UNSUBSCRIBED)
        )
    second = "email,name,city\r\nu1@example.com,New One,Bergen\r\nu2@example.com,Two Again,\r\n"

    async def people() -> dict[str, tuple[str | None, dict[str, object]]]:
        async with admin.db.read() as session:
            rows = await session.execute(
                select(Subscriber.email, Subscriber.name, Subscriber.attributes)
            )
            return {email: (name, attributes) for email, name, attributes in rows}

    before = await people()
    plain = await import_csv(admin, token, "daily", second.encode())
    assert plain["updated"] == 0 and await people() == before  # not asked: nothing changes
    dry = await import_csv(admin, token, "daily", second.encode(), update_existing="1", dry_run="1")
    assert dry["updated"] == 2 and await people() == before

    report = await import_csv(admin, token, "daily", second.encode(), update_existing="1")
    assert report["updated"] == 2 and report["unchanged"] == 1
    assert report["left_unsubscribed"] == 1 and report["confirmation_sent"] == 0
    after = await people()
    assert after["u1@example.com"] == ("New One", {"city": "Bergen", "plan": "free"})
    assert after["u2@example.com"][0] == "Two Again"
    assert await list_statuses(admin, "daily") == {
        "u1@example.com": "confirmed",
        "u2@example.com": "unsubscribed",  # the opt-out wins over the update
    }
    again = await import_csv(admin, token, "daily", second.encode(), update_existing="1")
    assert again["updated"] == 0  # nothing left to change

    source = tmp_path / "more.csv"
    source.write_text("email,name,plan\nu1@example.com,Cli One,paid\n")
    done = await cli(
        ["import", "--list", "daily", str(source), "--update-existing"], admin.settings
    )
    assert done.returncode == 0, done.stderr
    assert b"1 already here: name or attributes updated" in done.stdout
    assert (await people())["u1@example.com"] == ("Cli One", {"city": "Bergen", "plan": "paid"})


async def test_import_form_remembers_the_list_and_names_it(admin: Running) -> None:
    """After an upload the form keeps the chosen list (and options), the summary names the
    list, and a summary with invalid rows is not shown as a success."""
    await create_list(admin.db, slug="weekly", name="Weekly digest", origins=[])
    session = await sign_in(admin)
    form = {"list": "weekly", "mode": "confirmed", "reason": REASON, "update_existing": "1"}
    bad = {"file": ("r.csv", b"email\r\nw1@example.com\r\nbad\r\n", "text/csv")}
    mixed = await admin.client.post("/admin/imports", data=form, files=bad, headers=session)
    assert mixed.status_code == 200
    assert "List: Weekly digest (weekly)" in mixed.text
    assert '<option value="weekly" selected>' in mixed.text
    assert '<option value="confirmed" selected>' in mixed.text
    assert 'name="update_existing" value="1" checked' in mixed.text
    assert "1 invalid row was left out" in mixed.text and "line 3: email:" in mixed.text
    assert 'class="flash"' not in mixed.text  # not the green box of a success

    good = {"file": ("r.csv", b"email\r\nw2@example.com\r\n", "text/csv")}
    clean = await admin.client.post("/admin/imports", data=form, files=good, headers=session)
    assert clean.status_code == 200 and 'class="flash"' in clean.text
    assert "List: Weekly digest (weekly)" in clean.text and "left out" not in clean.text
    assert await list_statuses(admin, "weekly") == {
        "w1@example.com": "confirmed",
        "w2@example.com": "confirmed",
    }

    refused = await admin.client.post(
        "/admin/imports", data={**form, "reason": ""}, files=good, headers=session
    )
    assert refused.status_code == 422 and '<option value="weekly" selected>' in refused.text


async def test_reserve_spreads_hits_over_every_rate(admin: Running) -> None:
    """Hits the cap has no room for are counted in the earliest windows where every rate
    has room, and given the time those windows begin."""
    rates = parse_rates("2/1m,3/1h")
    now = datetime(2026, 1, 1, 10, 59, 30, tzinfo=UTC)
    async with admin.db.write() as session:
        times = await run(session, limits.reserve("test:cap", 6, rates, now))
        more = await run(session, limits.reserve("test:cap", 1, rates, now))
    eleven, noon = (datetime(2026, 1, 1, h, 0, tzinfo=UTC) for h in (11, 12))
    one_past = eleven + timedelta(minutes=1)
    # 2 now (the minute is full), 2 at 11:00, 1 at 11:01 (the hour is full), 1 at noon.
    assert times == [now, now, eleven, eleven, one_past, noon]
    assert more == [noon]  # later hits queue behind the earlier ones


async def test_the_command_line_import_shows_its_progress_on_stderr(
    admin: Running, tmp_path: Path
) -> None:
    source = tmp_path / "large.csv"
    rows = "".join(f"reader{i}@example.com,Reader {i}\r\n" for i in range(1200))
    source.write_text("email,name\r\n" + rows)
    done = await cli(
        ["import", "--list", "daily", str(source), "--confirmed", "--reason", REASON],
        admin.settings,
    )
    assert done.returncode == 0, done.stderr
    # Not a terminal here: plain lines, the last one at the end.
    assert done.stderr.decode().splitlines()[-1].startswith("importing: 100% 1,200/1,200 rows")
    assert b"1200 subscribed as confirmed" in done.stdout
