"""The admin JSON API with API tokens, as a script would use it."""

from __future__ import annotations

import pytest
from support import SUBSCRIBE, Running, SMTPServer, bearer

from service.auth.api_tokens import create_token, revoke_token
from service.auth.users import create_user

ENDPOINTS = [
    ("GET", "/api/v1/admin/lists"),
    ("POST", "/api/v1/admin/lists"),
    ("GET", "/api/v1/admin/lists/daily"),
    ("PATCH", "/api/v1/admin/lists/daily"),
    ("GET", "/api/v1/admin/subscribers"),
    ("GET", "/api/v1/admin/subscribers/1"),
    ("DELETE", "/api/v1/admin/subscribers/1"),
    ("POST", "/api/v1/admin/subscribers/1/unsubscribe"),
    ("GET", "/api/v1/admin/stats"),
    ("GET", "/api/v1/admin/exports"),
    ("GET", "/api/v1/admin/exports?list=daily&status=all&format=ndjson"),
    ("POST", "/api/v1/admin/lists/daily/imports"),
]


@pytest.fixture
async def token(app: Running) -> str:
    await create_user(app.db, "alice", "correct horse battery")
    return await create_token(app.db, "alice", "tests")


async def test_every_endpoint_wants_a_valid_token(app: Running, token: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nlt_wrong"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
    ):
        for method, path in ENDPOINTS:
            response = await app.client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "API token" in response.json()["message"]


async def test_revoked_tokens_stop_working(app: Running, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    assert (await app.client.get("/api/v1/admin/lists", headers=auth)).status_code == 200
    await revoke_token(app.db, 1)
    assert (await app.client.get("/api/v1/admin/lists", headers=auth)).status_code == 401


async def test_lists_subscribers_and_erasure(app: Running, token: str, smtp: SMTPServer) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    created = await app.client.post(
        "/api/v1/admin/lists",
        headers=auth,
        json={
            "slug": "weekly",
            "name": "Weekly",
            "origins": ["https://blog.example.com/"],
            "language": "fr",
        },
    )
    assert created.status_code == 201
    assert created.json()["allowed_origins"] == ["https://blog.example.com"]
    assert created.json()["box"]["button"] == "S'abonner"
    again = await app.client.post(
        "/api/v1/admin/lists", headers=auth, json={"slug": "weekly", "name": "Again"}
    )
    assert again.status_code == 409
    bad = await app.client.post(
        "/api/v1/admin/lists",
        headers=auth,
        content=b"{nope",
    )
    assert bad.status_code == 415
    patched = await app.client.patch(
        "/api/v1/admin/lists/weekly",
        headers=auth,
        json={"accent": "#112233", "origins": ["https://a.example"]},
    )
    assert patched.status_code == 200
    assert patched.json()["box"]["accent"] == "#112233"
    assert patched.json()["allowed_origins"] == ["https://a.example"]
    wrong = await app.client.patch(
        "/api/v1/admin/lists/weekly", headers=auth, json={"position": "top"}
    )
    assert wrong.status_code == 422 and "position" in wrong.json()["message"]

    await app.client.post(SUBSCRIBE, json={"email": "api@example.com"})
    await smtp.wait_for(1)
    found = await app.client.get("/api/v1/admin/subscribers?q=api", headers=auth)
    [item] = found.json()["items"]
    assert item["email"] == "api@example.com"
    assert item["lists"] == [{"list": "daily", "status": "pending"}]
    person = await app.client.get(f"/api/v1/admin/subscribers/{item['id']}", headers=auth)
    assert person.json()["consent_records"][0]["action"] == "subscribe"
    stats = await app.client.get("/api/v1/admin/stats", headers=auth)
    assert {
        "list": "daily",
        "name": "Frühstücks-Briefing",
        "pending": 1,
        "confirmed": 0,
        "unsubscribed": 0,
    } in stats.json()["lists"]
    assert sum(d["signups"] for d in stats.json()["daily"]) == 1

    off = await app.client.post(
        f"/api/v1/admin/subscribers/{item['id']}/unsubscribe", headers=auth, json={"list": "daily"}
    )
    assert off.status_code == 200
    gone = await app.client.delete(f"/api/v1/admin/subscribers/{item['id']}", headers=auth)
    assert gone.status_code == 204
    assert (
        await app.client.get(f"/api/v1/admin/subscribers/{item['id']}", headers=auth)
    ).status_code == 404


async def test_numbers_no_row_can_have_are_not_found_not_errors(app: Running, token: str) -> None:
    """Found by fuzzing: ids past PostgreSQL's INTEGER, non-ASCII digits, non-string origins."""
    auth = {"Authorization": f"Bearer {token}"}
    for value in ("2147483648", "99999999999999999999", "9" * 5000, "²", "0", "-1", "1.5"):
        for method, path in (
            ("GET", f"/api/v1/admin/subscribers/{value}"),
            ("DELETE", f"/api/v1/admin/subscribers/{value}"),
        ):
            response = await app.client.request(method, path, headers=auth)
            assert response.status_code == 404, (method, value)
        unsubscribe = await app.client.post(
            f"/api/v1/admin/subscribers/{value}/unsubscribe", headers=auth, json={"list": "daily"}
        )
        assert unsubscribe.status_code == 404, value
        page = await app.client.get(
            "/api/v1/admin/subscribers", params={"after": value}, headers=auth
        )
        whole = value.isascii() and value.isdigit()
        assert page.status_code == (200 if whole else 422), value
        page = await app.client.get(
            "/api/v1/admin/subscribers", params={"limit": value}, headers=auth
        )
        assert page.status_code == 422, value  # a page holds 1 to 500
        assert "limit" in page.json()["message"]
    for origins in ([{}], [1], {"a": "b"}, 5):
        response = await app.client.patch(
            "/api/v1/admin/lists/daily", headers=auth, json={"origins": origins}
        )
        assert response.status_code == 422, origins
        assert response.json()["message"] == "origins must be a list of URLs."


async def test_wrong_json_types_are_refused_not_stored_as_text(app: Running, token: str) -> None:
    auth = bearer(token)
    for body, field in (
        ({"consent_text": {"a": 1}}, "consent_text"),
        ({"name": {}}, "name"),
        ({"name": ["Täglich"]}, "name"),
        ({"double_opt_in": "0"}, "double_opt_in"),
        ({"title": 5}, "title"),
        ({"delay": None}, "delay"),
    ):
        response = await app.client.patch("/api/v1/admin/lists/daily", headers=auth, json=body)
        assert response.status_code == 422, body
        assert field in response.json()["fields"], response.json()
    for body, field in (
        ({"slug": 0, "name": "Null"}, "slug"),
        ({"slug": "zero", "name": 0}, "name"),
        ({"slug": "zero", "name": "Null", "double_opt_in": "yes"}, "double_opt_in"),
    ):
        response = await app.client.post("/api/v1/admin/lists", headers=auth, json=body)
        assert response.status_code == 422, body
        assert response.json()["fields"] == {field: response.json()["fields"][field]}
    listed = await app.client.get("/api/v1/admin/lists/daily", headers=auth)
    assert listed.json()["consent_text"] != "{'a': 1}" and listed.json()["name"] != "{}"
    assert (await app.client.get("/api/v1/admin/lists/zero", headers=auth)).status_code == 404
    # The right types still go through, box numbers and flags as text too.
    fine = await app.client.patch(
        "/api/v1/admin/lists/daily",
        headers=auth,
        json={"name": "Täglich", "double_opt_in": False, "delay": 5, "nameField": True},
    )
    assert fine.status_code == 200, fine.text
    assert fine.json()["name"] == "Täglich" and fine.json()["double_opt_in"] is False
