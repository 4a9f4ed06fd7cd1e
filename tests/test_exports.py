"""Exports: exact CSV bytes for awkward names, NDJSON, filters, layouts, page, API and CLI."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from support import PAGE, PEOPLE, T0, T1, Running, add_people, bearer, cli, sign_in

from service.cli.data import Progress
from service.lists import create_list
from service.models import ConsentAction, ConsentRecord, Subscriber, Subscription
from service.transfer.formats import WRITERS, neutralise, unneutralise

HEADER = (
    "email,name,list,status,subscribed_at,confirmed_at,unsubscribed_at,consent_source,"
    "attributes,signup_ip,signup_user_agent,signup_wording,confirm_ip,confirm_user_agent,"
    "confirm_wording\r\n"
)
# The latest signup and confirmation records' evidence (add_evidence), each row's last cells;
# a user agent that starts like a formula is neutralised as a name is.
EVIDENCE = ",203.0.113.7,Mozilla/5.0 (X11),Yes please,2001:db8::1,'=cmd|calc,Confirm"
ROWS = (
    'a@example.com,"Smith, Jo",daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,'
    '"https://www.example.com/article?id=1,2","{""city"":""Köln"",""n"":2}"\r\n'
    'b@example.com,"Say ""hi""",daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,'
    '"https://www.example.com/article?id=1,2",{}\r\n'
    'c@example.com,"line one\nline two",daily,confirmed,2025-01-02T03:04:05Z,'
    '2025-01-02T03:10:00Z,,"https://www.example.com/article?id=1,2",{}\r\n'
    "d@example.com,Zoë 😀 Ünal,daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,"
    '"https://www.example.com/article?id=1,2",{}\r\n'
    'e@example.com,"\'=HYPERLINK(""http://evil.example"",""click"")",daily,confirmed,'
    '2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,"https://www.example.com/article?id=1,2",{}\r\n'
    "f@example.com,'+1 555 0100,daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,"
    '"https://www.example.com/article?id=1,2",{}\r\n'
    "g@example.com,'-2+3,daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,"
    '"https://www.example.com/article?id=1,2",{}\r\n'
    "h@example.com,'@SUM(A1:A9),daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,"
    '"https://www.example.com/article?id=1,2",{}\r\n'
    "i@example.com,'\tTabbed,daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,"
    '"https://www.example.com/article?id=1,2",{}\r\n'
    'j@example.com,"\'\rReturn",daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,'
    '"https://www.example.com/article?id=1,2",{}\r\n'
    "'=1+2@example.com,,daily,confirmed,2025-01-02T03:04:05Z,2025-01-02T03:10:00Z,,"
    '"https://www.example.com/article?id=1,2",{}\r\n'
    "k@example.com,''=quoted already,daily,confirmed,2025-01-02T03:04:05Z,"
    '2025-01-02T03:10:00Z,,"https://www.example.com/article?id=1,2",{}\r\n'
)
EXPECTED_CSV = (
    HEADER + "".join(row + EVIDENCE + "\r\n" for row in ROWS.split("\r\n")[:-1])
).encode()


async def add_evidence(app: Running) -> None:
    """IP and user agent on every signup record; two confirmations, the latest exported."""
    async with app.db.write() as session:
        await session.execute(
            update(ConsentRecord).values(
                ip_address="203.0.113.7", user_agent="Mozilla/5.0 (X11)", wording="Yes please"
            )
        )
        confirmed = await session.scalars(
            select(Subscription.id).where(Subscription.confirmed_at.is_not(None))
        )
        for sid in confirmed.all():
            for when, ip, agent in ((T0, "192.0.2.1", "Old"), (T1, "2001:db8::1", "=cmd|calc")):
                session.add(
                    ConsentRecord(
                        subscription_id=sid,
                        action=ConsentAction.CONFIRM,
                        created_at=when,
                        ip_address=ip,
                        user_agent=agent,
                        wording="Confirm",
                        method="link",
                    )
                )


async def test_csv_bytes_are_exact_and_neutralise_formulas(admin: Running, token: str) -> None:
    await add_people(admin)
    await add_evidence(admin)
    response = await admin.client.get("/api/v1/admin/exports?list=daily", headers=bearer(token))
    assert response.status_code == 200
    assert response.content == EXPECTED_CSV
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    today = datetime.now(UTC).date().isoformat()
    assert response.headers["content-disposition"] == f'attachment; filename="daily-{today}.csv"'
    assert "content-length" not in response.headers, "streamed, not built in memory"

    with_bom = await admin.client.get(
        "/api/v1/admin/exports?list=daily&bom=1&status=confirmed", headers=bearer(token)
    )
    assert with_bom.content == b"\xef\xbb\xbf" + EXPECTED_CSV

    session = await sign_in(admin)
    download = await admin.client.get(
        "/admin/exports/download?list=daily&format=csv&status=confirmed", headers=session
    )
    assert download.status_code == 200 and download.content == EXPECTED_CSV
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["cache-control"] == "no-store"


def test_neutralising_is_undone_exactly() -> None:
    for value in ("=1", "+", "-x", "@", "\tx", "\rx", "'=x", "''+x", "'", "'plain", "plain", ""):
        assert unneutralise(neutralise(value)) == value, value
        first = neutralise(value)[:1]
        assert first not in {"=", "+", "-", "@", "\t", "\r"}, value


async def test_ndjson_lines_parse(admin: Running, token: str) -> None:
    await add_people(admin)
    await add_evidence(admin)
    async with admin.db.write() as session:  # n@ signed up again, later: that one counts
        pending_id = await session.scalar(
            select(Subscription.id)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email == "n@example.com")
        )
        assert pending_id is not None
        session.add(
            ConsentRecord(
                subscription_id=pending_id,
                action=ConsentAction.SUBSCRIBE,
                created_at=T1,
                ip_address="198.51.100.2",
                user_agent="Again",
                wording="Yes again",
                method="form",
            )
        )
    response = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=ndjson&status=all", headers=bearer(token)
    )
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].endswith('.ndjson"')
    assert response.content.endswith(b"\n")
    lines = [json.loads(line) for line in response.content.decode().splitlines()]
    assert [(o["email"], o["name"], o["attributes"]) for o in lines] == [
        (e, n, a) for e, n, a, _, _ in PEOPLE
    ]
    first = lines[0]
    assert first == {
        "email": "a@example.com",
        "name": "Smith, Jo",
        "list": "daily",
        "status": "confirmed",
        "subscribed_at": "2025-01-02T03:04:05Z",
        "confirmed_at": "2025-01-02T03:10:00Z",
        "unsubscribed_at": None,
        "consent_source": PAGE,
        "attributes": {"city": "Köln", "n": 2},
        "signup_ip": "203.0.113.7",
        "signup_user_agent": "Mozilla/5.0 (X11)",
        "signup_wording": "Yes please",
        "confirm_ip": "2001:db8::1",
        "confirm_user_agent": "=cmd|calc",
        "confirm_wording": "Confirm",
    }
    pending = next(o for o in lines if o["email"] == "n@example.com")
    assert (pending["signup_ip"], pending["signup_user_agent"], pending["signup_wording"]) == (
        "198.51.100.2",
        "Again",
        "Yes again",
    ), "the latest signup's evidence"
    assert pending["consent_source"] == PAGE, "still where they first came from"
    assert (pending["confirm_ip"], pending["confirm_user_agent"], pending["confirm_wording"]) == (
        None,
        None,
        None,
    ), "no confirmation, no evidence of one"
    statuses = {o["email"]: o["status"] for o in lines}
    assert statuses["l@example.com"] == "unsubscribed"
    assert statuses["l@example.com"] == "unsubscribed"
    assert statuses["m@example.com"] == "failed"
    assert statuses["n@example.com"] == "pending"
    assert lines[12]["unsubscribed_at"] == "2025-03-04T05:06:07Z"


async def test_filters_by_status_date_and_list(admin: Running, token: str) -> None:
    await add_people(admin)
    await create_list(admin.db, slug="weekly", name="Weekly", origins=[])
    await add_people(
        admin,
        "weekly",
        [("zz@example.com", "Zed", {}, "confirmed", False)],
    )

    async def emails(query: str) -> list[tuple[str, str, str]]:
        response = await admin.client.get(
            f"/api/v1/admin/exports?format=ndjson&{query}", headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        return [
            (o["email"], o["list"], o["status"])
            for o in map(json.loads, response.content.decode().splitlines())
        ]

    assert await emails("list=daily&status=failed") == [("m@example.com", "daily", "failed")]
    assert await emails("list=daily&status=unsubscribed,pending") == [
        ("l@example.com", "daily", "unsubscribed"),
        ("n@example.com", "daily", "pending"),
    ]
    assert len(await emails("list=daily&status=confirmed&status=failed")) == 13
    everyone = await emails("status=all")
    assert len(everyone) == 16 and ("zz@example.com", "weekly", "confirmed") in everyone
    assert await emails("list=weekly") == [("zz@example.com", "weekly", "confirmed")]
    assert await emails("list=daily&since=2025-01-03") == []
    assert len(await emails("list=daily&until=2025-01-02")) == 12, "the until day is included"
    assert await emails("list=daily&until=2025-01-01") == []


async def test_mailchimp_and_listmonk_layouts(admin: Running, token: str) -> None:
    await add_people(admin, people=PEOPLE[:1] + PEOPLE[10:11] + PEOPLE[12:13])
    await add_evidence(admin)
    header = (
        b"Email Address,First Name,Last Name,TAGS,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,"
        b"UNSUB_TIME\r\n"
    )
    mailchimp = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=mailchimp", headers=bearer(token)
    )
    assert mailchimp.content == header + (  # as they are, for Mailchimp's importer
        b'a@example.com,"Smith,",Jo,daily,2025-01-02 03:04:05,203.0.113.7,'
        b"2025-01-02 03:10:00,2001:db8::1,\r\n"
        b"=1+2@example.com,,,daily,2025-01-02 03:04:05,203.0.113.7,"
        b"2025-01-02 03:10:00,2001:db8::1,\r\n"
    )
    left = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=mailchimp&status=unsubscribed",
        headers=bearer(token),
    )
    assert left.content == header + (
        b"l@example.com,Left,,daily,2025-01-02 03:04:05,203.0.113.7,2025-01-02 03:10:00,"
        b"2001:db8::1,2025-03-04 05:06:07\r\n"
    )
    assert mailchimp.headers["content-disposition"].endswith(
        "-mailchimp-" + (datetime.now(UTC).date().isoformat()) + '.csv"'
    )
    listmonk = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=listmonk", headers=bearer(token)
    )
    assert listmonk.content == (
        b"email,name,attributes\r\n"
        b'a@example.com,"Smith, Jo","{""city"":""K\xc3\xb6ln"",""n"":2}"\r\n'
        b"=1+2@example.com,,{}\r\n"
    )


def test_mailchimp_names_split_at_the_first_space() -> None:
    """First Name is the first word, Last Name the rest; no formula guard for its importer."""
    _, write = WRITERS["mailchimp"]()
    empty = (None, None, None, None, "", None, None, None, None, None, None)
    rows = [
        ("q@example.com", "Quinn van der Berg", "daily", "confirmed", *empty),
        ("+t@example.com", "Cher", "daily", "confirmed", *empty),
        ("n@example.com", None, "daily", "confirmed", *empty),
    ]
    assert write(rows) == (
        "q@example.com,Quinn,van der Berg,daily,,,,,\r\n"
        "+t@example.com,Cher,,daily,,,,,\r\n"
        "n@example.com,,,daily,,,,,\r\n"
    )


def test_attributes_are_always_a_json_object() -> None:
    """Our CSV and listmonk's: ``{}`` when there are none, the object when there are."""
    row = ("a@example.com", "A", "daily", "confirmed", None, None, None, None)
    evidence = (None,) * 6
    for fmt, tail in (("csv", ",,,,,,\r\n"), ("listmonk", "\r\n")):
        _, write = WRITERS[fmt]()
        for raw, cell in (("{}", "{}"), (None, "{}"), ('{"n": 2}', '"{""n"":2}"')):
            assert write([(*row, raw, *evidence)]).endswith(f",{cell}{tail}"), (fmt, raw)


async def test_a_mailchimp_export_is_one_status(admin: Running, token: str, tmp_path: Path) -> None:
    """Mailchimp imports one status per file: several at once are refused, never mixed."""
    await add_people(admin)
    api = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=mailchimp&status=confirmed,unsubscribed",
        headers=bearer(token),
    )
    assert api.status_code == 422
    assert "export one status at a time" in api.json()["message"]
    session = await sign_in(admin)
    page = await admin.client.get(
        "/admin/exports/download?list=daily&format=mailchimp&status=all", headers=session
    )
    assert page.status_code == 422 and "export one status at a time" in page.text
    assert b"@example.com" not in page.content
    result = await cli(
        ["export", "--format", "mailchimp", "--status", "all", "-o", str(tmp_path / "m.csv")],
        admin.settings,
    )
    assert result.returncode == 2 and b"export one status at a time" in result.stderr
    assert not (tmp_path / "m.csv").exists()


async def test_a_listmonk_export_is_one_list_and_one_status(admin: Running, token: str) -> None:
    """listmonk's import takes the list and subscribe-or-blocklist from whoever imports.

    So opt-outs never sit in a file among subscribers, and nobody is repeated once per list.
    """
    await add_people(admin)
    mixed = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=listmonk&status=confirmed,unsubscribed",
        headers=bearer(token),
    )
    assert mixed.status_code == 422
    assert "listmonk imports one status per file" in mixed.json()["message"]
    every_list = await admin.client.get(
        "/api/v1/admin/exports?format=listmonk", headers=bearer(token)
    )
    assert every_list.status_code == 422
    assert "export one list at a time" in every_list.json()["message"]
    session = await sign_in(admin)
    page = await admin.client.get(
        "/admin/exports/download?format=listmonk&status=all", headers=session
    )
    assert page.status_code == 422 and b"@example.com" not in page.content
    left = await admin.client.get(
        "/api/v1/admin/exports?list=daily&format=listmonk&status=unsubscribed",
        headers=bearer(token),
    )
    assert left.status_code == 200
    assert left.content == b"email,name,attributes\r\nl@example.com,Left,{}\r\n"


async def test_bad_export_requests_say_what_is_wrong(admin: Running, token: str) -> None:
    for query, status, words in (
        ("list=nope", 404, "no list 'nope'"),
        ("format=xlsx", 422, "format must be one of"),
        ("status=bounced", 422, "status must be one or more of"),
        ("since=yesterday", 422, "since must be a date"),
    ):
        response = await admin.client.get(f"/api/v1/admin/exports?{query}", headers=bearer(token))
        assert response.status_code == status, query
        assert words in response.json()["message"], query
    session = await sign_in(admin)
    page = await admin.client.get("/admin/exports/download?format=xlsx", headers=session)
    assert page.status_code == 422 and "format must be one of" in page.text


async def test_nothing_is_exported_without_signing_in(admin: Running) -> None:
    await add_people(admin)
    page = await admin.client.get("/admin/exports/download?list=daily&status=all")
    assert page.status_code == 303 and b"example.com" not in page.content
    api = await admin.client.get("/api/v1/admin/exports?list=daily&status=all")
    assert api.status_code == 401 and b"example.com" not in api.content


async def test_cli_export(admin: Running, token: str, tmp_path: Path) -> None:
    await add_people(admin)
    await add_evidence(admin)
    target = tmp_path / "out.csv"
    result = await cli(["export", "--list", "daily", "-o", str(target)], admin.settings)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == EXPECTED_CSV
    assert b"exported 12 rows" in result.stderr
    assert b"\r" not in result.stderr, "no progress bar when stderr is not a terminal"
    assert not (tmp_path / "out.csv.part").exists()

    piped = await cli(
        ["export", "--list", "daily", "--format", "ndjson", "--status", "all"], (admin.settings)
    )
    assert len(piped.stdout.splitlines()) == len(PEOPLE)
    missing = await cli(["export", "--list", "nope"], admin.settings)
    assert missing.returncode == 1 and b"no list 'nope'" in missing.stderr
    bad = await cli(["export", "--status", "bounced"], admin.settings)
    assert bad.returncode == 2 and b"status must be" in bad.stderr


def test_progress_bar_draws_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = Progress("exporting", 200, "rows", stream=screen)
    bar.advance(100)
    bar.close()
    assert "\rexporting [" in screen.getvalue() and "100/200 rows" in screen.getvalue()
    assert screen.getvalue().endswith("\n")
    plain = io.StringIO()
    quiet = Progress("exporting", 200, "rows", stream=plain)
    quiet.advance(100)
    quiet.close()
    assert plain.getvalue() == ""
