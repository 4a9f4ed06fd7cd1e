"""The box in parts: what every page loads, what only some lists load, and the settings
(targeting) that decide where it shows."""

from __future__ import annotations

import gzip

import pytest
from support import Running, bearer

from service.web.assets import PART_SOURCES, parts_version, widget_asset, widget_part
from service.widget_settings import effective, validate_changes


def test_a_plain_lists_page_loads_only_what_it_uses() -> None:
    core = widget_asset()
    assert len(core.gzipped) <= 5 * 1024
    solver = widget_part("pow")
    assert solver is not None and b"clz32" in solver.body
    assert b"clz32" not in core.body, "the proof-of-work solver is a part of its own"
    assert parts_version().encode() in core.body, "widget.js asks for the parts by version"
    for name in PART_SOURCES:
        part = widget_part(name)
        assert part is not None and b"export default" in part.body, name


async def test_parts_are_served_like_widget_js(app: Running) -> None:
    version = parts_version()
    got = await app.client.get(f"/widget/pow.js?v={version}", headers={"Accept-Encoding": "gzip"})
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/javascript")
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert got.headers["access-control-allow-origin"] == "*"
    assert got.headers["content-encoding"] == "gzip"
    part = widget_part("pow")
    assert part is not None and got.content == part.body  # httpx decodes the gzip
    assert gzip.decompress(part.gzipped) == part.body
    stale = await app.client.get("/widget/pow.js?v=0", headers={"Accept-Encoding": "identity"})
    assert stale.headers["cache-control"] == "public, max-age=300"
    missing = await app.client.get("/widget/nope.js")
    assert missing.status_code == 404 and "nope" in missing.json()["message"]


def test_targeting_settings_are_checked() -> None:
    clean = validate_changes(
        {"showOn": "/articles/*, /news  /", "afterViews": "2", "startDate": "2026-12-01"}
    )
    assert clean == {"showOn": "/articles/*\n/news\n/", "afterViews": 2, "startDate": "2026-12-01"}
    for changes, says in (
        ({"showOn": "articles/*"}, "not a page path"),
        ({"hideOn": ["/a"]}, "must be text"),
        ({"afterViews": -1}, "from 0 to 100"),
        ({"minWidth": "wide"}, "whole number"),
        ({"startDate": "tomorrow"}, "date such as"),
        ({"startDate": "2026-12-24", "endDate": "2026-12-01"}, "not be before"),
    ):
        with pytest.raises(ValueError, match=says):
            validate_changes(changes)


async def test_targeting_is_edited_in_the_admin_and_sent_to_the_box(
    admin: Running, token: str
) -> None:
    changed = await admin.client.patch(
        "/api/v1/admin/lists/daily",
        json={"hideOn": "/members/*", "afterViews": 1, "endDate": "2099-01-01"},
        headers=bearer(token),
    )
    assert changed.status_code == 200, changed.text
    settings = (await admin.client.get("/api/v1/lists/daily/widget")).json()["settings"]
    assert (settings["hideOn"], settings["afterViews"], settings["endDate"]) == (
        "/members/*",
        1,
        "2099-01-01",
    )
    page = await admin.client.get("/admin/lists/daily", headers=bearer(token))
    assert 'name="hideOn"' in page.text and "/members/*" in page.text


def test_the_focus_ring_is_the_accent_only_where_it_stands_out() -> None:
    from service.models import MailingList

    dark_blue = MailingList(slug="a", name="A", language="en", widget={"accent": "#1a56db"})
    yellow = MailingList(slug="b", name="B", language="en", widget={"accent": "#ffff00"})
    assert effective(dark_blue)["ring"] == ["#1a56db", ""]  # on white; on the dark box
    assert effective(yellow)["ring"] == ["", "#ffff00"]
