"""The admin side's own security: token scopes and expiry, roles (owner, editor), disabling
admins, sessions, and the audit log, through the API, the pages and the command line."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
from datetime import timedelta

from sqlalchemy import text
from support import SAME_SITE, Running, add_people, bearer, cli, sign_in, visible

from service.auth.api_tokens import check_token, create_token
from service.auth.users import create_user, list_users, set_disabled, set_role
from service.db import Database
from service.models import utcnow
from service.settings import Settings

# Every admin API endpoint, and the scope it needs.
ENDPOINTS = [
    ("GET", "/api/v1/admin/lists", "read"),
    ("POST", "/api/v1/admin/lists", "write"),
    ("GET", "/api/v1/admin/lists/daily", "read"),
    ("PATCH", "/api/v1/admin/lists/daily", "write"),
    ("GET", "/api/v1/admin/subscribers", "read"),
    ("GET", "/api/v1/admin/subscribers/1", "read"),
    ("DELETE", "/api/v1/admin/subscribers/1", "erase"),
    ("POST", "/api/v1/admin/subscribers/1/unsubscribe", "write"),
    ("GET", "/api/v1/admin/stats", "read"),
    ("GET", "/api/v1/admin/exports", "export"),
    ("POST", "/api/v1/admin/lists/daily/imports", "write"),
    ("GET", "/api/v1/admin/tokens", "admin"),
    ("POST", "/api/v1/admin/tokens", "admin"),
    ("DELETE", "/api/v1/admin/tokens/999", "admin"),
    ("GET", "/api/v1/admin/admins", "admin"),
    ("POST", "/api/v1/admin/admins", "admin"),
    ("GET", "/api/v1/admin/admins/alice", "admin"),
    ("PATCH", "/api/v1/admin/admins/alice", "admin"),
    ("GET", "/api/v1/admin/audit", "admin"),
    ("POST", "/api/v1/admin/subscribers", "write"),
    ("PATCH", "/api/v1/admin/subscribers/1", "write"),
    ("POST", "/api/v1/admin/subscribers/bulk", "write"),
    ("GET", "/api/v1/admin/blocklist", "read"),
    ("POST", "/api/v1/admin/blocklist", "write"),
    ("DELETE", "/api/v1/admin/blocklist/999", "write"),
]
SCOPES = ("read", "export", "write", "erase", "admin")
EDITOR_PASSWORD = "plum kettle orbit sunday"


async def test_every_admin_endpoint_refuses_a_token_without_its_scope(admin: Running) -> None:
    tokens = {
        scope: await create_token(admin.db, "alice", scope, scopes=[scope]) for scope in SCOPES
    }
    for method, path, needed in ENDPOINTS:
        for headers in ({}, bearer("nlt_unknown")):
            anonymous = await admin.client.request(method, path, headers=headers, json={})
            assert anonymous.status_code == 401, (method, path)
        for scope, token in tokens.items():
            response = await admin.client.request(method, path, headers=bearer(token), json={})
            if scope == needed:
                assert response.status_code not in {401, 403}, (method, path, visible(response))
            else:
                assert response.status_code == 403, (method, path, scope)
                message = response.json()["message"]
                assert f"'{needed}' scope" in message, (method, path, message)


async def test_an_expired_token_is_told_it_expired(admin: Running) -> None:
    token = await create_token(admin.db, "alice", "old", expires_at=utcnow() - timedelta(seconds=1))
    response = await admin.client.get("/api/v1/admin/lists", headers=bearer(token))
    assert response.status_code == 401
    assert "expired" in response.json()["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    fresh = await create_token(admin.db, "alice", "new", expires_at=utcnow() + timedelta(days=1))
    assert (await admin.client.get("/api/v1/admin/lists", headers=bearer(fresh))).status_code == 200


async def test_tokens_made_through_the_api_have_what_was_asked_and_no_more(
    admin: Running,
) -> None:
    maker = await create_token(admin.db, "alice", "maker", scopes=["read", "admin"])
    auth = bearer(maker)
    for body, field in [
        ({"name": 5, "scopes": ["read"]}, "name"),
        ({"scopes": ["read"]}, "name"),
        ({"name": "   ", "scopes": ["read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["read"]}, "name"),
        ({"name": "n", "scopes": "read"}, "scopes"),
        ({"name": "n"}, "scopes"),
        ({"name": "n", "scopes": []}, "scopes"),
        ({"name": "n", "scopes": ["root"]}, "scopes"),
        ({"name": "n", "scopes": [1]}, "scopes"),
        ({"name": "n", "scopes": ["read"], "expires_in_days": "30"}, "expires_in_days"),
        ({"name": "n", "scopes": ["read"], "expires_in_days": True}, "expires_in_days"),
        ({"name": "n", "scopes": ["read"], "expires_in_days": 0}, "expires_in_days"),
        ({"name": "n", "scopes": ["read"], "expires_in_days": 1.5}, "expires_in_days"),
        ({"name": "n", "scopes": ["read"], "expires_in_days": 10**6}, "expires_in_days"),
    ]:
        response = await admin.client.post("/api/v1/admin/tokens", headers=auth, json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.json()["fields"], (body, response.json())
    plain = await admin.client.post("/api/v1/admin/tokens", headers=auth, content=b"name=x")
    assert plain.status_code == 415
    # A token cannot hand on a scope it does not have itself.
    wider = await admin.client.post(
        "/api/v1/admin/tokens", headers=auth, json={"name": "n", "scopes": ["read", "export"]}
    )
    assert wider.status_code == 403
    assert "'export'" in wider.json()["message"]

    made = await admin.client.post(
        "/api/v1/admin/tokens",
        headers=auth,
        json={"name": "Nächtlicher Export ✓", "scopes": ["READ"], "expires_in_days": 30},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["scopes"] == ["read"]
    assert body["admin"] == "alice"
    assert body["name"] == "Nächtlicher Export ✓"
    assert body["expires_at"][:10] == (utcnow() + timedelta(days=30)).date().isoformat()
    new = bearer(body["token"])
    assert (await admin.client.get("/api/v1/admin/lists", headers=new)).status_code == 200
    assert (await admin.client.get("/api/v1/admin/tokens", headers=new)).status_code == 403

    listed = (await admin.client.get("/api/v1/admin/tokens", headers=auth)).json()["tokens"]
    assert [(t["name"], t["scopes"], t["state"]) for t in listed] == [
        ("maker", ["read", "admin"], "active"),
        ("Nächtlicher Export ✓", ["read"], "active"),
    ]
    gone = await admin.client.delete(f"/api/v1/admin/tokens/{body['id']}", headers=auth)
    assert gone.status_code == 204
    again = await admin.client.delete(f"/api/v1/admin/tokens/{body['id']}", headers=auth)
    assert again.status_code == 404
    for bad in ("abc", "0", "99999999999999999999"):
        missing = await admin.client.delete(f"/api/v1/admin/tokens/{bad}", headers=auth)
        assert missing.status_code == 404
    assert (await admin.client.get("/api/v1/admin/lists", headers=new)).status_code == 401


async def test_an_editor_cannot_export_erase_or_manage_admins(admin: Running) -> None:
    await add_people(admin)
    await create_user(admin.db, "bob", EDITOR_PASSWORD, role="editor")
    editor = await sign_in(admin, EDITOR_PASSWORD, "bob")
    token = await create_token(admin.db, "bob", "all four")  # read, export, write, erase

    # The API: the role caps the token, and the answer names what is missing.
    exported = await admin.client.get("/api/v1/admin/exports", headers=bearer(token))
    assert exported.status_code == 403
    assert "'export' permission" in exported.json()["message"]
    assert "editor" in exported.json()["message"]
    erased = await admin.client.delete("/api/v1/admin/subscribers/1", headers=bearer(token))
    assert erased.status_code == 403
    assert "'erase'" in erased.json()["message"]
    assert (
        await admin.client.get("/api/v1/admin/subscribers", headers=bearer(token))
    ).status_code == 200

    # The pages: refused on the server, and not offered.
    for method, path in [
        ("GET", "/admin/exports/download?list=daily"),
        ("GET", "/admin/subscribers/1/data.json"),
        ("POST", "/admin/subscribers/1/erase"),
        ("GET", "/admin/admins"),
        ("GET", "/admin/tokens"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/audit.csv"),
        ("POST", "/admin/admins/alice"),
    ]:
        response = await admin.client.request(method, path, headers=editor)
        assert response.status_code == 403, (method, path)
        assert "permission" in visible(response)
    person = visible(await admin.client.get("/admin/subscribers/1", headers=editor))
    assert "Export this person's data" not in person
    assert "Delete all data" not in person
    exports = await admin.client.get("/admin/exports", headers=editor)
    assert "Download" not in visible(exports)
    assert "Import" in visible(exports)
    security = await admin.client.get("/admin/sessions", headers=editor)
    assert security.status_code == 200
    assert "Audit log" not in visible(security)
    assert "Admins" not in visible(security)
    # What an editor may do, they still can.
    renamed = await admin.client.post(
        "/admin/lists/daily", headers=editor, data={"name": "Daily news"}
    )
    assert renamed.status_code == 303


async def test_a_disabled_admin_is_out_at_once(admin: Running) -> None:
    owner = await sign_in(admin)
    await create_user(admin.db, "bob", EDITOR_PASSWORD, role="editor")
    bob = await sign_in(admin, EDITOR_PASSWORD, "bob")
    token = await create_token(admin.db, "bob", "script", scopes=["read"])
    assert (await admin.client.get("/admin/", headers=bob)).status_code == 200

    done = await admin.client.post("/admin/admins/bob", headers=owner, data={"action": "disable"})
    assert done.status_code == 303
    assert (await admin.client.get("/admin/", headers=bob)).status_code == 303  # to sign-in
    assert (await admin.client.get("/api/v1/admin/lists", headers=bearer(token))).status_code == 401
    refused = await admin.client.post(
        "/admin/login", data={"username": "bob", "password": EDITOR_PASSWORD}, headers=SAME_SITE
    )
    assert refused.status_code == 401
    listed = visible(await admin.client.get("/admin/admins?done=disabled", headers=owner))
    assert "disabled" in listed

    assert (
        await admin.client.post("/admin/admins/bob", headers=owner, data={"action": "enable"})
    ).status_code == 303
    await sign_in(admin, EDITOR_PASSWORD, "bob")
    # Tokens revoked on disabling stay revoked.
    assert (await admin.client.get("/api/v1/admin/lists", headers=bearer(token))).status_code == 401


async def test_the_last_active_owner_stays_an_owner(admin: Running) -> None:
    auth = bearer(await create_token(admin.db, "alice", "t", scopes=["read", "admin"]))
    for change in ({"role": "editor"}, {"disabled": True}):
        refused = await admin.client.patch("/api/v1/admin/admins/alice", headers=auth, json=change)
        assert refused.status_code == 409, change
        assert "last active owner" in refused.json()["message"]
    owner = await sign_in(admin)
    page = await admin.client.post(
        "/admin/admins/alice", headers=owner, data={"action": "role", "role": "editor"}
    )
    assert page.status_code == 409
    assert "last active owner" in visible(page)

    added = await admin.client.post(
        "/api/v1/admin/admins",
        headers=auth,
        json={"username": "carol", "password": EDITOR_PASSWORD, "role": "owner"},
    )
    assert added.status_code == 201, added.text
    assert added.json()["role"] == "owner"
    demoted = await admin.client.patch(
        "/api/v1/admin/admins/alice", headers=auth, json={"role": "editor"}
    )
    assert demoted.status_code == 200
    assert demoted.json()["role"] == "editor"
    # The token's admin scope went with the role.
    assert (await admin.client.get("/api/v1/admin/admins", headers=auth)).status_code == 403


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(admin: Running) -> None:
    await create_user(admin.db, "carol", EDITOR_PASSWORD, role="owner")
    results = await asyncio.gather(
        set_role(admin.db, "alice", "editor"),
        set_disabled(admin.db, "carol", True),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["LastOwner", "bool"], results
    owners = [u for u in await list_users(admin.db) if u.role == "owner" and not u.disabled_at]
    assert len(owners) == 1


async def test_admin_changes_refuse_what_makes_no_sense(admin: Running) -> None:
    auth = bearer(await create_token(admin.db, "alice", "t", scopes=["admin"]))
    for body, status in [
        ({"disabled": "yes"}, 422),
        ({"disabled": 1}, 422),
        ({"role": 3}, 422),
        ({"role": "god"}, 422),
        ({"role": None}, 422),
        ({}, 422),
        ({"password": "x"}, 422),
    ]:
        response = await admin.client.patch("/api/v1/admin/admins/alice", headers=auth, json=body)
        assert response.status_code == status, (body, response.text)
    for body, status in [
        ({"username": "dave", "password": EDITOR_PASSWORD, "role": "boss"}, 422),
        ({"username": "dave", "password": "aaaaaaaaaa"}, 422),
        ({"username": "dave"}, 422),
        ({"username": ["dave"], "password": EDITOR_PASSWORD}, 422),
        ({"username": "dä ve", "password": EDITOR_PASSWORD}, 422),
        ({"username": "alice", "password": EDITOR_PASSWORD}, 409),
    ]:
        response = await admin.client.post("/api/v1/admin/admins", headers=auth, json=body)
        assert response.status_code == status, (body, response.text)
    made = await admin.client.post(
        "/api/v1/admin/admins", headers=auth, json={"username": "dave", "password": EDITOR_PASSWORD}
    )
    assert made.json()["role"] == "editor"  # the least power unless asked
    missing = await admin.client.patch(
        "/api/v1/admin/admins/nobody", headers=auth, json={"disabled": True}
    )
    assert missing.status_code == 404


async def test_the_audit_log_says_who_did_what_from_where(admin: Running) -> None:
    await add_people(admin)
    failed = await admin.client.post(
        "/admin/login", data={"username": "alice", "password": "wrong"}, headers=SAME_SITE
    )
    assert failed.status_code == 401
    owner = await sign_in(admin)
    token = await create_token(admin.db, "alice", "all", scopes=list(SCOPES))
    auth = bearer(token)
    await admin.client.post(
        "/api/v1/admin/lists", headers=auth, json={"slug": "weekly", "name": "Weekly"}
    )
    # A refused action commits nothing and records nothing.
    bad = await admin.client.post(
        "/api/v1/admin/lists", headers=auth, json={"slug": "no way", "name": "X"}
    )
    assert bad.status_code == 422
    assert (
        await admin.client.delete("/api/v1/admin/subscribers/999", headers=auth)
    ).status_code == 404
    assert (
        await admin.client.get("/api/v1/admin/exports?list=daily", headers=auth)
    ).status_code == 200
    for dry_run in ("1", ""):
        imported = await admin.client.post(
            f"/api/v1/admin/lists/daily/imports?dry_run={dry_run}",
            headers={**auth, "Content-Type": "text/csv"},
            content=b"email\r\nnew@example.com\r\n",
        )
        assert imported.json()["confirmation_sent"] == 1, imported.text
    erased_email = "a@example.com"
    assert (
        await admin.client.delete("/api/v1/admin/subscribers/1", headers=auth)
    ).status_code == 204
    await admin.client.post("/admin/tokens", headers=owner, data={"name": "ci", "scopes": "read"})

    log = (await admin.client.get("/api/v1/admin/audit", headers=auth)).json()
    actions = [(e["action"], e["actor"], e["target"]) for e in log["events"]]
    assert actions == [
        ("token.create", "alice", "token 2 (ci)"),
        ("subscriber.erase", "alice", "subscriber 1"),
        ("import", "alice", "daily"),  # the dry run before it wrote, and records, nothing
        ("export", "alice", "daily"),
        ("list.create", "alice", "weekly"),
        ("signin", "alice", ""),
        ("signin.failed", "alice", ""),
    ]
    assert log["events"][1]["via"] == "token"
    assert log["events"][2]["detail"]["changed"] == 1
    assert log["events"][-1]["detail"] == {"reason": "wrong password"}
    assert all(e["client"] for e in log["events"])
    assert erased_email not in str(log)  # an erasure's record does not keep the address

    only = (await admin.client.get("/api/v1/admin/audit?action=export", headers=auth)).json()
    assert [e["action"] for e in only["events"]] == ["export"]
    first = (await admin.client.get("/api/v1/admin/audit?limit=2", headers=auth)).json()
    assert len(first["events"]) == 2
    rest = await admin.client.get(
        f"/api/v1/admin/audit?limit=10&before={first['next_before']}", headers=auth
    )
    assert rest.json()["events"][0]["action"] == "import"
    for query in ("action=nothing", "limit=0", "limit=x", "before=-1", "format=xml"):
        bad_query = await admin.client.get(f"/api/v1/admin/audit?{query}", headers=auth)
        assert bad_query.status_code == 422, query

    exported = await admin.client.get("/admin/audit.csv", headers=owner)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text.removeprefix("\ufeff"))))
    assert rows[0] == ["id", "time", "actor", "via", "client", "action", "target", "detail"]
    assert [r[5] for r in rows[1:]] == [a for a, _, _ in actions]
    page = visible(await admin.client.get("/admin/audit?action=signin.failed", headers=owner))
    assert "wrong password" in page
    assert "list.create" not in page.split("Every action")[-1].split("Download CSV")[-1]
    assert (await admin.client.get("/admin/audit?action=bogus", headers=owner)).status_code == 422


async def test_sessions_seen_and_ended(admin: Running) -> None:
    owner = await sign_in(admin)
    await create_user(admin.db, "bob", EDITOR_PASSWORD, role="editor")
    bob = await sign_in(admin, EDITOR_PASSWORD, "bob")
    bob_page = visible(await admin.client.get("/admin/sessions", headers=bob))
    assert "Your signed-in sessions" in bob_page
    owner_page = await admin.client.get("/admin/sessions", headers=owner)
    assert "every admin" in visible(owner_page)
    ids = re.findall(r'name="session" value="([0-9a-f]{64})"', owner_page.text)
    assert len(ids) == 2
    # An editor cannot end someone else's session; the owner can.
    others = [
        i for i in ids if i not in (await admin.client.get("/admin/sessions", headers=bob)).text
    ]
    [alices] = others
    refused = await admin.client.post(
        "/admin/sessions/revoke", headers=bob, data={"session": alices}
    )
    assert refused.status_code == 404
    for junk in ("", "x" * 64, "é" * 10):
        gone = await admin.client.post(
            "/admin/sessions/revoke", headers=owner, data={"session": junk}
        )
        assert gone.status_code == 404
    [bobs] = [i for i in ids if i != alices]
    ended = await admin.client.post("/admin/sessions/revoke", headers=owner, data={"session": bobs})
    assert ended.status_code == 303
    assert (await admin.client.get("/admin/", headers=bob)).status_code == 303
    assert (await admin.client.get("/admin/", headers=owner)).status_code == 200


async def test_the_command_line_manages_admins_roles_and_scoped_tokens(
    admin: Running, settings: Settings
) -> None:
    listed = await cli(["admin", "list"], settings)
    assert listed.stdout.decode().startswith("alice\towner\tactive")
    refused = await cli(["admin", "disable", "alice"], settings)
    assert refused.returncode == 1
    assert b"last active owner" in refused.stderr
    made = await cli(
        [
            "admin",
            "token",
            "create",
            "nightly",
            "--scopes",
            "read,export",
            "--expires-in-days",
            "7",
        ],
        settings,
    )
    assert made.returncode == 0, made.stderr
    principal = await check_token(admin.db, made.stdout.decode().strip())
    assert principal is not None
    assert principal.scopes == {"read", "export"}
    wrong = await cli(["admin", "token", "create", "x", "--scopes", "read,root"], settings)
    assert wrong.returncode == 1
    assert b"'root' is not a scope" in wrong.stderr
    tokens = (await cli(["admin", "token", "list"], settings)).stdout.decode()
    assert "\tread,export\tactive until" in tokens
    await create_user(admin.db, "bob", EDITOR_PASSWORD, role="editor")
    assert (await cli(["admin", "role", "bob", "owner"], settings)).returncode == 0
    assert (await cli(["admin", "disable", "alice"], settings)).returncode == 0
    log = (await cli(["admin", "list"], settings)).stdout.decode()
    assert "alice\towner\tdisabled" in log
    assert "bob\towner\tactive" in log


async def test_tokens_and_admins_from_before_keep_every_power(settings: Settings) -> None:
    """Migrating to roles and scopes: an existing admin is an owner and an existing token
    keeps read, export, write and erase, with no expiry."""
    db = Database.from_url(settings.database_url)
    try:
        await db.downgrade("0004")
        async with db.write() as session:
            await session.execute(
                text(
                    "INSERT INTO admin_users (id, username, password_hash, created_at) "
                    "VALUES (1, 'old', 'x', :now)"
                ),
                {"now": utcnow()},
            )
            await session.execute(
                text(
                    "INSERT INTO api_tokens (id, name, token_hash, user_id, created_at) "
                    "VALUES (1, 'old', :hash, 1, :now)"
                ),
                {"hash": hashlib.sha256(b"nlt_old-token").hexdigest(), "now": utcnow()},
            )
        await db.migrate()
        principal = await check_token(db, "nlt_old-token")
    finally:
        await db.dispose()
    assert principal is not None
    assert principal.role == "owner"
    assert principal.scopes == {"read", "export", "write", "erase"}


async def test_the_token_page_says_what_is_wrong(admin: Running) -> None:
    owner = await sign_in(admin)
    for days in ("abc", "0", "-1", "3651", "²"):
        response = await admin.client.post(
            "/admin/tokens",
            headers=owner,
            data={"name": "x", "scopes": "read", "expires_in_days": days},
        )
        assert response.status_code == 422, days
        assert "No token made: expires_in_days" in visible(response)
    none = await admin.client.post("/admin/tokens", headers=owner, data={"name": "x"})
    assert none.status_code == 422
    assert "at least one scope" in visible(none)


async def test_bulk_erasure_needs_the_erase_scope_and_bulk_actions_are_audited(
    admin: Running,
) -> None:
    await add_people(admin)
    writer = bearer(await create_token(admin.db, "alice", "writer", scopes=["read", "write"]))
    owner = bearer(await create_token(admin.db, "alice", "owner", scopes=list(SCOPES)))
    erase = {"action": "erase", "filters": {"list": "daily"}}
    refused = await admin.client.post("/api/v1/admin/subscribers/bulk", headers=writer, json=erase)
    assert refused.status_code == 403
    assert "'erase' scope" in refused.json()["message"]
    planned = await admin.client.post("/api/v1/admin/subscribers/bulk", headers=owner, json=erase)
    assert planned.status_code == 200 and planned.json()["done"] is False
    matching = planned.json()["matching"]
    assert matching > 0
    unsubscribe = {"action": "unsubscribe", "filters": {"list": "daily"}, "expected": matching}
    done = await admin.client.post(
        "/api/v1/admin/subscribers/bulk", headers=writer, json=unsubscribe
    )
    assert done.status_code == 200, done.text
    assert done.json()["changed"] + done.json()["left"] == matching
    blocked = await admin.client.post(
        "/api/v1/admin/blocklist", headers=writer, json={"entries": ["spam.example"]}
    )
    assert blocked.status_code == 201, blocked.text

    log = (await admin.client.get("/api/v1/admin/audit", headers=owner)).json()
    actions = [(e["action"], e["via"]) for e in log["events"]]
    assert actions[:2] == [("blocklist.add", "token"), ("bulk.unsubscribe", "token")]
    assert log["events"][1]["detail"] == {"expected": matching}
    assert not any(e["action"] == "bulk.erase" for e in log["events"])
