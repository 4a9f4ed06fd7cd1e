"""Counting what the box does: the event endpoint, signups and confirmations credited to
the box's page and variant, the cap on pages, and the figures the admin API and the admin
pages give back."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta

from sqlalchemy import func, select
from support import SUBSCRIBE, Running, SMTPServer, bearer, signups_acted_on

from service.box_counts import OTHER, BoxCounter, Where
from service.box_stats import BoxReport, Funnel, wilson_lower
from service.lists import get_list
from service.models import BoxCount, utcnow

EVENTS = "/api/v1/lists/daily/events"
SITE = {"Origin": "https://www.example.com"}
FORM = {**SITE, "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}


async def beacon(app: Running, event: str, page: str, device: str = "larger", **more: str) -> int:
    body = {"e": event, "p": page, "v": "", "d": device, **more}
    response = await app.client.post(EVENTS, data=body, headers=FORM)
    return response.status_code


async def report(app: Running, token: str, query: str = "") -> dict:  # type: ignore[type-arg]
    response = await app.client.get(f"/api/v1/admin/lists/daily/box{query}", headers=bearer(token))
    assert response.status_code == 200, response.text
    result: dict = response.json()  # type: ignore[type-arg]
    return result


async def rows(app: Running) -> int:
    async with app.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(BoxCount)) or 0)


async def test_funnel_pages_and_confirmations_credited_to_the_signups_page(
    admin: Running, token: str, smtp: SMTPServer
) -> None:
    app = admin
    for page, device, shown in (("/a/first", "larger", 5), ("/a/second", "phone", 2)):
        for _ in range(shown):
            assert await beacon(app, "shown", page, device) == 204
    assert await beacon(app, "dismissed", "/a/first") == 204
    for page in ("/a/first", "/a/first", "/a/second"):
        assert (
            await beacon(app, "submitted", page, "phone" if "second" in page else "larger") == 204
        )
    # Three signups from the box (its page, screen size and variant), one from elsewhere.
    for email, url, box in (
        ("one@example.com", "https://www.example.com/a/first?utm=x#top", "larger:"),
        ("two@example.com", "https://www.example.com/a/first", "larger:"),
        ("three@example.com", "https://www.example.com/a/second", "phone:"),
        ("api@example.com", "https://www.example.com/a/first", None),
    ):
        fields = {"email": email, "page_url": url}
        if box is not None:
            fields["box"] = box
        assert (await app.client.post(SUBSCRIBE, data=fields, headers=SITE)).status_code == 202
    mails = await smtp.wait_for(4)
    await signups_acted_on(app.db)
    # Two confirm: one from /a/first, the one from /a/second, and the API's (not counted).
    for mail in mails:
        if mail.rcpt_tos[0] in {"one@example.com", "three@example.com", "api@example.com"}:
            done = await app.client.post(app.local(mail.links["confirm"]))
            assert done.status_code == 303
    # A repeat confirms nothing twice.
    again = next(m for m in mails if m.rcpt_tos[0] == "one@example.com")
    await app.client.post(app.local(again.links["confirm"]))

    got = await report(app, token)
    funnel = got["funnel"]
    assert {k: funnel[k] for k in ("shown", "dismissed", "submitted", "accepted", "confirmed")} == {
        "shown": 7,
        "dismissed": 1,
        "submitted": 3,
        "accepted": 3,
        "confirmed": 2,
    }
    assert funnel["submitted_rate"] == 3 / 7 and funnel["confirmed_rate"] == 2 / 7
    pages = {p["page"]: p for p in got["pages"]}
    assert set(pages) == {"/a/first", "/a/second"}, "no query string, no fragment"
    assert (pages["/a/first"]["shown"], pages["/a/first"]["confirmed"]) == (5, 1)
    assert (pages["/a/second"]["shown"], pages["/a/second"]["confirmed"]) == (2, 1)
    [day] = got["days"]
    assert day["day"] == utcnow().date().isoformat() and day["confirmed"] == 2
    assert [v["variant"] for v in got["variants"]] == ["control"]

    phones = await report(app, token, "?device=phone")
    assert (phones["funnel"]["shown"], phones["funnel"]["confirmed"]) == (2, 1)
    assert [p["page"] for p in phones["pages"]] == ["/a/second"]

    # The admin page and the CSV say the same.
    page = await app.client.get("/admin/lists/daily/box", headers=bearer(token))
    assert page.status_code == 200 and "/a/second" in page.text
    download = await app.client.get(
        "/admin/lists/daily/box/pages.csv?order=conversion", headers=bearer(token)
    )
    assert download.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(download.text.lstrip("\ufeff"))))
    assert [(r["page"], r["shown"], r["confirmed"]) for r in table] == [
        ("/a/second", "2", "1"),
        ("/a/first", "5", "1"),
    ]


async def test_bad_events_get_a_4xx_that_says_what_and_count_nothing(
    admin: Running, token: str
) -> None:
    app = admin
    cases = [
        ("/api/v1/lists/nope/events", {"e": "shown", "p": "/", "d": "phone"}, FORM, 404, "nope"),
        (
            EVENTS,
            {"e": "shown", "p": "/", "d": "phone"},
            {**FORM, "Origin": "https://evil.example"},
            403,
            "allowed",
        ),
        (EVENTS, {"e": "clicked", "p": "/", "d": "phone"}, FORM, 422, "e: the event"),
        (EVENTS, {"e": "shown", "p": "/", "d": "tablet"}, FORM, 422, "d: the device"),
        (EVENTS, {"e": "shown", "p": "/" + "x" * 300, "d": "phone"}, FORM, 422, "at most 256"),
        (EVENTS, {"e": "shown", "p": "relative", "d": "phone"}, FORM, 422, "must start with /"),
        (EVENTS, {"e": "shown", "p": "/\x00", "d": "phone"}, FORM, 422, "control characters"),
        (EVENTS, {"e": "shown", "p": "/", "d": "phone", "v": "ghost"}, FORM, 422, "no variant"),
        (EVENTS, {"e": "shown", "p": "/", "v": "Ä"}, FORM, 422, "missing field: d"),
    ]
    for path, body, headers, status, says in cases:
        response = await app.client.post(path, data=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert says in response.json()["message"], response.text
    wrong_type = await app.client.post(EVENTS, json={"e": "shown"}, headers=SITE)
    assert wrong_type.status_code == 415
    not_utf8 = await app.client.post(EVENTS, content=b"e=shown&p=/\xff&d=phone", headers=FORM)
    assert not_utf8.status_code == 422
    huge = await app.client.post(EVENTS, content=b"e=shown&p=/" + b"a" * 2000, headers=FORM)
    assert huge.status_code == 413
    # Do Not Track and Global Privacy Control: answered, and nothing counted.
    for header in ({"DNT": "1"}, {"Sec-GPC": "1"}):
        response = await app.client.post(
            EVENTS, data={"e": "shown", "p": "/", "d": "phone"}, headers={**FORM, **header}
        )
        assert response.status_code == 204
    assert (await report(app, token))["funnel"]["shown"] == 0
    assert await rows(app) == 0


async def test_counts_are_added_up_not_stored_per_event(admin: Running, token: str) -> None:
    """Sixty concurrent events make one row per list, day, page, variant, device and
    event, not one per event; every one is counted."""
    app = admin
    results = await asyncio.gather(*(beacon(app, "shown", f"/p/{i % 3}") for i in range(60)))
    assert set(results) == {204}
    assert (await report(app, token))["funnel"]["shown"] == 60
    assert await rows(app) == 3


async def test_new_pages_past_the_days_cap_are_counted_as_other(admin: Running) -> None:
    counter = BoxCounter(admin.db, pages_per_day=3)
    daily = await get_list(admin.db, "daily")
    assert daily is not None
    list_id = daily.id
    now = utcnow()
    # Two flushes: the cap holds across writes (and processes), not just within one.
    for page in ("/a", "/b"):
        counter.add(list_id, "shown", Where(page, "", "phone"), now)
    await counter.flush()
    for i in range(50):
        counter.add(list_id, "shown", Where(f"/invented/{i}", "", "phone"), now)
    counter.add(list_id, "shown", Where("/a", "", "phone"), now)
    assert counter.pending == 51
    await counter.flush()
    assert counter.pending == 0
    async with admin.db.read() as session:
        stored = dict((await session.execute(select(BoxCount.page, BoxCount.count))).all())
    assert len(stored) == 4 and stored[OTHER] == 49 and stored["/a"] == 2
    # Another day starts afresh.
    counter.add(list_id, "shown", Where("/new", "", "phone"), now + timedelta(days=1))
    await counter.flush()
    assert await rows(admin) == 5


def test_pages_by_conversion_rank_volume_over_luck() -> None:
    # Known values (95 %): 1 of 3 -> 0.0615; 90 of 3000 -> 0.0245; 0 of n -> 0.
    assert round(wilson_lower(1, 3), 4) == 0.0615
    assert round(wilson_lower(90, 3000), 4) == 0.0245
    assert wilson_lower(0, 100) < 1e-9 and wilson_lower(0, 0) == 0.0
    assert wilson_lower(20, 100) > wilson_lower(90, 3000)
    today = utcnow().date()
    result = BoxReport(today, today, None, Funnel(), {}, {}, {})
    for page, shown, confirmed in (("/lucky", 3, 1), ("/big", 3000, 90), ("/good", 100, 20)):
        result.pages[page] = Funnel()
        result.pages[page].add("shown", shown)
        result.pages[page].add("confirmed", confirmed)
    assert [p for p, _ in result.pages_by("conversion")] == ["/good", "/big", "/lucky"]
    assert [p for p, _ in result.pages_by("count")] == ["/big", "/good", "/lucky"]
