"""Proof of work: valid, replayed, expired, for another list, wrong, missing; every way in."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from support import (
    PASSWORD,
    SECRET,
    SUBSCRIBE,
    Running,
    SMTPServer,
    make_list,
    run_cli,
    serve_app,
    sign_in,
    visible,
)

from service.challenges import CLOCK_MARGIN, Challenges, solve, solves
from service.db import Database
from service.lists import get_list, update_list
from service.models import UsedChallenge, utcnow
from service.retention import purge
from service.settings import Settings, SettingsError

ALLOWED = "https://www.example.com"
CHALLENGE = "/api/v1/lists/daily/challenge"


@pytest.fixture
def easy(settings: Settings) -> Settings:
    """Few enough zero bits that the tests solve challenges in Python at once."""
    return settings.replace(pow_difficulty=8)


async def turn_on(settings: Settings, slug: str = "daily") -> None:
    db = Database.from_url(settings.database_url)
    try:
        await update_list(db, slug, {"proofOfWork": "true"})
    finally:
        await db.dispose()


async def solved(app: Running, slug: str = "daily") -> dict[str, str]:
    reply = await app.client.get(f"/api/v1/lists/{slug}/challenge")
    assert reply.status_code == 200
    challenge = reply.json()["challenge"]
    return {"pow_challenge": challenge, "pow_solution": solve(challenge, 8)}


async def count(db: Database, model: type) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def refused(reply: object, words: str) -> None:
    import httpx

    assert isinstance(reply, httpx.Response)
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"] == "proof_of_work"
    assert words in reply.json()["message"], reply.json()["message"]


async def test_a_valid_solution_signs_up_and_the_email_arrives(
    easy: Settings, smtp: SMTPServer
) -> None:
    await make_list(easy)
    await turn_on(easy)
    async with serve_app(easy) as app:
        reply = await app.client.get(CHALLENGE, headers={"Origin": ALLOWED})
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] == ALLOWED
        assert reply.headers["vary"] == "Origin"
        assert reply.headers["cache-control"] == "no-store"
        body = reply.json()
        assert body["difficulty"] == 8 and body["required"] is True
        assert body["expires_in"] == 600
        # challenge + ":" ends on a SHA-256 block boundary, whatever the slug's length
        assert (len(body["challenge"]) + 1) % 64 == 0
        assert body["challenge"] != (await app.client.get(CHALLENGE)).json()["challenge"]
        answer = solve(body["challenge"], 8)
        assert solves(body["challenge"], answer, 8)
        signup = await app.client.post(
            SUBSCRIBE,
            json={
                "email": "solver@example.com",
                "pow_challenge": body["challenge"],
                "pow_solution": answer,
            },
            headers={"Origin": ALLOWED},
        )
        assert signup.status_code == 202, signup.text
        [mail] = await smtp.wait_for(1)
        assert mail.rcpt_tos == ["solver@example.com"]
        async with app.db.read() as session:
            used = await session.scalar(select(UsedChallenge))
        assert used is not None
        # Remembered until after the challenge expires, then purged.
        expires = utcnow() + timedelta(seconds=600) + CLOCK_MARGIN
        assert abs((used.expires_at.replace(tzinfo=expires.tzinfo) - expires).total_seconds()) < 5
        assert (await purge(app.db, easy)).challenges == 0
        assert (await purge(app.db, easy, now=expires + timedelta(seconds=5))).challenges == 1


async def test_a_replayed_challenge_is_refused_also_by_another_instance(
    easy: Settings, smtp: SMTPServer
) -> None:
    await make_list(easy)
    await turn_on(easy)
    async with serve_app(easy) as one, serve_app(easy) as two:
        proof = await solved(one)
        first = await one.client.post(SUBSCRIBE, json={"email": "a@example.com", **proof})
        assert first.status_code == 202
        for app, email in [(one, "b@example.com"), (two, "c@example.com"), (one, "a@example.com")]:
            again = await app.client.post(SUBSCRIBE, json={"email": email, **proof})
            refused(again, "used already")
        await smtp.wait_for(1)
        await asyncio.sleep(0.3)  # time for anything else the worker would send
        assert [m.rcpt_tos for m in smtp.received] == [["a@example.com"]]


async def test_an_expired_challenge_is_refused(easy: Settings, smtp: SMTPServer) -> None:
    await make_list(easy)
    await turn_on(easy)
    old = Challenges(SECRET, 8, 600).make("daily", now=time.time() - 601)
    async with serve_app(easy) as app:
        reply = await app.client.post(
            SUBSCRIBE,
            json={
                "email": "late@example.com",
                "pow_challenge": old.text,
                "pow_solution": solve(old.text, 8),
            },
        )
        refused(reply, "expired")
        assert await count(app.db, UsedChallenge) == 0


async def test_a_challenge_for_another_list_is_refused(easy: Settings, smtp: SMTPServer) -> None:
    await make_list(easy)
    await make_list(easy, "other")
    await turn_on(easy)
    await turn_on(easy, "other")
    async with serve_app(easy) as app:
        proof = await solved(app, "other")
        reply = await app.client.post(SUBSCRIBE, json={"email": "x@example.com", **proof})
        refused(reply, "another list")
        # ... and it still works where it belongs.
        there = await app.client.post(
            "/api/v1/lists/other/subscriptions", json={"email": "x@example.com", **proof}
        )
        assert there.status_code == 202


async def test_wrong_forged_and_too_easy_solutions_are_refused(
    easy: Settings, smtp: SMTPServer
) -> None:
    await make_list(easy)
    await turn_on(easy)
    async with serve_app(easy) as app:
        proof = await solved(app)
        challenge = proof["pow_challenge"]
        wrong = next(str(n) for n in range(1000) if not solves(challenge, str(n), 8))
        cases = [
            ({**proof, "pow_solution": wrong}, "solution is wrong"),
            ({**proof, "pow_solution": "-1"}, "whole number"),
            ({**proof, "pow_solution": "1" * 40}, "whole number"),
            # The difficulty is signed: lowering it breaks the signature.
            ({**proof, "pow_challenge": challenge.replace(".8.", ".1.", 1)}, "not one this"),
            (
                {**proof, "pow_challenge": "daily.1.1.aaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbb"},
                "not one this",
            ),
        ]
        for fields, words in cases:
            refused(
                await app.client.post(SUBSCRIBE, json={"email": "w@example.com", **fields}), words
            )
        # Not text at all: the wrong JSON type, named.
        typed = await app.client.post(
            SUBSCRIBE, json={"email": "w@example.com", **proof, "pow_challenge": ["a"]}
        )
        assert typed.status_code == 422
        assert typed.json()["fields"] == {"pow_challenge": "must be text, not a list"}
        # Signed by us, but easier than the service now asks (the difficulty was raised).
        easier = Challenges(SECRET, 4, 600).make("daily")
        reply = await app.client.post(
            SUBSCRIBE,
            json={
                "email": "w@example.com",
                "pow_challenge": easier.text,
                "pow_solution": solve(easier.text, 4),
            },
        )
        refused(reply, "easier than")
        # None of these spent the real challenge: it still works once.
        ok = await app.client.post(SUBSCRIBE, json={"email": "w@example.com", **proof})
        assert ok.status_code == 202


async def test_missing_is_refused_on_a_pow_list_and_not_needed_elsewhere(
    easy: Settings, smtp: SMTPServer
) -> None:
    await make_list(easy)
    await make_list(easy, "plain")
    await turn_on(easy)
    async with serve_app(easy) as app:
        for fields in [{}, {"pow_challenge": ""}, {"pow_solution": "12"}]:
            reply = await app.client.post(SUBSCRIBE, json={"email": "m@example.com", **fields})
            refused(reply, "GET /api/v1/lists/daily/challenge")
        plain = await app.client.post(
            "/api/v1/lists/plain/subscriptions", json={"email": "m@example.com"}
        )
        assert plain.status_code == 202
        info = (await app.client.get("/api/v1/lists/plain/challenge")).json()
        assert info["required"] is False
        config = (await app.client.get("/api/v1/lists/daily/widget")).json()
        assert config["settings"]["proofOfWork"] is True
        assert await count(app.db, UsedChallenge) == 0


async def test_an_invalid_field_does_not_spend_the_challenge(
    easy: Settings, smtp: SMTPServer
) -> None:
    await make_list(easy)
    await turn_on(easy)
    async with serve_app(easy) as app:
        proof = await solved(app)
        typo = await app.client.post(SUBSCRIBE, json={"email": "typo@", **proof})
        assert typo.status_code == 422
        fixed = await app.client.post(SUBSCRIBE, json={"email": "typo@example.com", **proof})
        assert fixed.status_code == 202


async def test_the_challenge_endpoint_follows_the_lists_origins(easy: Settings) -> None:
    await make_list(easy)
    async with serve_app(easy) as app:
        foreign = await app.client.get(CHALLENGE, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert "access-control-allow-origin" not in foreign.headers
        assert foreign.headers["vary"] == "Origin"
        missing = await app.client.get("/api/v1/lists/nope/challenge")
        assert missing.status_code == 404


async def test_form_post_and_hosted_page(easy: Settings, smtp: SMTPServer) -> None:
    await make_list(easy)
    await turn_on(easy)
    html = {"Accept": "text/html"}
    async with serve_app(easy) as app:
        # A classic form post without the solution: a page that says what is needed.
        bare = await app.client.post(SUBSCRIBE, data={"email": "f@example.com"}, headers=html)
        assert bare.status_code == 403
        assert "needs JavaScript" in visible(bare)
        proof = await solved(app)
        bad = await app.client.post(
            SUBSCRIBE, data={"email": "f@example.com", **proof, "pow_solution": "x"}, headers=html
        )
        assert bad.status_code == 403 and "reload the page" in visible(bad)
        ok = await app.client.post(
            SUBSCRIBE, data={"email": "f@example.com", **proof}, headers=html
        )
        assert ok.status_code == 202, ok.text

        # The hosted page brings its challenge and a script (with the page's nonce) to solve it.
        page = await app.client.get("/subscribe/daily")
        nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"])
        assert nonce is not None
        assert f'<script nonce="{nonce.group(1)}">' in page.text
        assert "<noscript>" in page.text and "needs JavaScript" in visible(page)
        found = re.search(r'name="pow_challenge" value="([^"]+)"', page.text)
        assert found is not None
        challenge = found.group(1)
        stamp = re.search(r'name="form_stamp" value="([^"]+)"', page.text)
        assert stamp is not None
        posted = await app.client.post(
            SUBSCRIBE,
            data={
                "email": "hosted@example.com",
                "form_stamp": stamp.group(1),
                "pow_challenge": challenge,
                "pow_solution": solve(challenge, 8),
            },
            headers=html,
        )
        assert posted.status_code == 202, posted.text
        await smtp.wait_for(2)
        assert sorted(m.rcpt_tos[0] for m in smtp.received) == [
            "f@example.com",
            "hosted@example.com",
        ]
    # A list without proof of work: no challenge, no script on its page.
    await make_list(easy, "plain")
    async with serve_app(easy) as app:
        page = await app.client.get("/subscribe/plain")
        assert "pow_challenge" not in page.text and "<script" not in page.text


async def test_switched_per_list_by_the_list_editor_admin_api_and_cli(settings: Settings) -> None:

    from service.auth.api_tokens import create_token
    from service.auth.users import create_user

    await make_list(settings)
    await make_list(settings, "weekly")
    async with serve_app(settings) as app:
        await create_user(app.db, "alice", PASSWORD)
        session = await sign_in(app)
        editor = await app.client.get("/admin/lists/daily", headers=session)
        assert 'name="proofOfWork" value="true" >' in editor.text  # unticked
        saved = await app.client.post(
            "/admin/lists/daily",
            data={"name": "Daily", "origins": ALLOWED, "proofOfWork": ["false", "true"]},
            headers=session,
        )
        assert saved.status_code == 303, visible(saved)
        config = (await app.client.get("/api/v1/lists/daily/widget")).json()
        assert config["settings"]["proofOfWork"] is True
        token = await create_token(app.db, "alice", "pow")
        auth = {"Authorization": f"Bearer {token}"}
        patched = await app.client.patch(
            "/api/v1/admin/lists/weekly", headers=auth, json={"proofOfWork": True}
        )
        assert patched.status_code == 200 and patched.json()["box"]["proofOfWork"] is True
        wrong = await app.client.patch(
            "/api/v1/admin/lists/weekly", headers=auth, json={"proofOfWork": "maybe"}
        )
        assert wrong.status_code == 422 and "proofOfWork" in wrong.json()["message"]
    env = {"NEWSLETTER_DATABASE_URL": settings.database_url}
    result = run_cli(["lists", "set", "weekly", "proofOfWork=false"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    db = Database.from_url(settings.database_url)
    try:
        weekly = await get_list(db, "weekly")
    finally:
        await db.dispose()
    assert weekly is not None and weekly.widget["proofOfWork"] is False


def test_settings() -> None:
    settings = Settings.from_env({})
    assert settings.pow_difficulty == 16 and settings.pow_lifetime == 600
    for bad in ("0", "33", "x"):
        with pytest.raises(SettingsError, match="NEWSLETTER_POW_DIFFICULTY"):
            Settings.from_env({"NEWSLETTER_POW_DIFFICULTY": bad})
