"""Under a flood the proof of work rises for everyone, instead of the list closing.

A list (or a client address) taking signups faster than its surge rate makes every signup
pay a proof of work, form stamp or not, that doubles as the rate doubles, up to a ceiling
a browser pays in about a second (``service.surge``). The scenario at the end floods a
list from outside while 50 readers sign up through the real box in Chromium.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from support import (
    SUBSCRIBE,
    Running,
    SMTPServer,
    clear_of_window_end,
    make_list,
    serve_app,
    visible,
)

from service import limits
from service.bots import FormStamps
from service.challenges import solve
from service.db import run
from service.keys import signing_key
from service.settings import Rate, Settings, SettingsError
from service.surge import bits

CHALLENGE = "/api/v1/lists/daily/challenge"
HOUR = 3600  # surge windows of an hour: a test's signups all fall in one


def surging(settings: Settings, **changes: object) -> Settings:
    """Cheap levels (4 to 7 bits) and a low surge rate, client addresses from the proxy."""
    defaults: dict[str, object] = {
        "trusted_proxies": ("127.0.0.1/32",),
        "pow_difficulty": 4,
        "pow_difficulty_max": 7,
        "pow_surge_list": Rate(4, HOUR),
        "pow_surge_client": None,
    }
    return settings.replace(**{**defaults, **changes})


def from_ip(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


async def puzzle(app: Running, ip: str, path: str = CHALLENGE) -> dict[str, object]:
    reply = await app.client.get(path, headers=from_ip(ip))
    assert reply.status_code == 200
    body: dict[str, object] = reply.json()
    return body


def paid(body: dict[str, object]) -> dict[str, str]:
    challenge, difficulty = str(body["challenge"]), int(str(body["difficulty"]))
    return {"pow_challenge": challenge, "pow_solution": solve(challenge, difficulty)}


def test_the_difficulty_doubles_the_work_as_the_rate_doubles() -> None:
    surge = Rate(60, 60)
    asked = {rate: bits(rate, surge, base=16, top=19) for rate in (0, 59, 60, 119, 120, 240, 10**6)}
    assert asked == {0: 0, 59: 0, 60: 16, 119: 16, 120: 17, 240: 18, 10**6: 19}
    assert bits(10**6, None, base=16, top=19) == 0  # off
    assert bits(100, Rate(1, 60), base=16, top=8) == 16  # the ceiling is never under the base


async def test_recent_rate_counts_what_the_last_window_still_covers(app: Running) -> None:
    """No cliff when a fixed window turns: the previous window counts for the part of it
    that the last minute still covers."""
    rate = Rate(10**9, 60)  # counted, never refused
    start = datetime.fromtimestamp(1_800_000_000 // 60 * 60, UTC)  # a window's first second
    at = start.timestamp()
    async with app.db.write() as session:
        await run(session, limits.add([("list:x", 10, (rate,))], start))
        same = await run(session, limits.recent(["list:x"], 60, start))
        later = datetime.fromtimestamp(at + 75, UTC)  # a quarter into the next window
        await run(session, limits.add([("list:x", 4, (rate,))], later))
        next_window = await run(session, limits.recent(["list:x", "list:y"], 60, later))
        gone = await run(
            session, limits.recent(["list:x"], 60, datetime.fromtimestamp(at + 180, UTC))
        )
    assert same == {"list:x": 10.0}
    assert next_window == {"list:x": 4 + 10 * 0.75, "list:y": 0.0}
    assert gone == {"list:x": 0.0}


async def test_a_list_over_its_surge_rate_makes_every_signup_pay_more_as_it_doubles(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    await make_list(settings, "other")
    flooded = surging(settings, min_fill_time=2.0)
    await clear_of_window_end(HOUR)
    async with serve_app(flooded) as app:
        stamps = FormStamps(await signing_key(flooded, app.db))

        def stamp() -> str:  # a form shown long enough ago: no proof needed while calm
            return stamps.make("daily", time.time() - 5)

        for n in range(4):
            calm = await app.client.post(
                SUBSCRIBE,
                data={"email": f"calm{n}@example.com", "form_stamp": stamp()},
                headers=from_ip(f"81.2.69.{n}"),
            )
            assert calm.status_code == 202
        # Four in the window: the fifth pays, fresh stamp or not.
        early = [await puzzle(app, "81.2.70.1") for _ in range(2)]
        assert {(p["required"], p["difficulty"]) for p in early} == {(True, 4)}
        unpaid = await app.client.post(
            SUBSCRIBE,
            data={"email": "bot@example.com", "form_stamp": stamp()},
            headers=from_ip("81.2.70.1"),
        )
        assert unpaid.status_code == 403
        assert unpaid.json()["error"] == "proof_of_work"
        assert "taking signups very fast" in unpaid.json()["message"]
        assert "/api/v1/lists/daily/challenge" in unpaid.json()["message"]
        # Each doubling of the rate asks one bit more, up to the ceiling.
        asked = []
        for n in range(4, 40):
            body = await puzzle(app, f"81.2.71.{n}")
            asked.append(body["difficulty"])
            fields = {"email": f"paid{n}@example.com", "form_stamp": stamp(), **paid(body)}
            if n == 8:  # a challenge handed out one level ago still does
                fields.update(paid(early[0]))
            reply = await app.client.post(SUBSCRIBE, data=fields, headers=from_ip(f"81.2.71.{n}"))
            assert reply.status_code == 202, (n, reply.text)
            if n == 16:  # two levels ago does not
                stale = {**fields, "email": "stale@example.com", **paid(early[1])}
                old = await app.client.post(SUBSCRIBE, data=stale, headers=from_ip("81.2.72.1"))
                assert old.status_code == 403
                assert "easier than this service now asks" in old.json()["message"]
        assert asked == [4] * 4 + [5] * 8 + [6] * 16 + [7] * 8
        # Another list is calm: its readers pay nothing.
        other = await app.client.post(
            "/api/v1/lists/other/subscriptions",
            data={"email": "elsewhere@example.com", "form_stamp": stamps.make("other", 1e9)},
        )
        assert other.status_code == 403  # a stamp too old: the usual check, not the surge
        assert "taking signups very fast" not in other.json()["message"]
        calm_puzzle = await puzzle(app, "81.2.69.1", "/api/v1/lists/other/challenge")
        assert (calm_puzzle["required"], calm_puzzle["difficulty"]) == (False, 4)
        metrics = (await app.client.get("/metrics")).text
        assert 'newsletter_signups_challenged_total{reason="surge"} 1.0' in metrics
        await smtp.wait_for(4 + 36)
    assert "bot@example.com" not in {m.rcpt_tos[0] for m in smtp.received}


async def test_a_client_over_its_surge_rate_pays_and_past_its_limit_is_refused(
    settings: Settings, smtp: SMTPServer
) -> None:
    """A busy client address (an office, a carrier's NAT) pays more; 429 is kept for a
    rate no browser reaches."""
    await make_list(settings)
    busy = surging(
        settings,
        pow_surge_list=None,
        pow_surge_client=Rate(2, HOUR),
        rate_limit_ip=(Rate(6, HOUR),),
    )
    await clear_of_window_end(HOUR)
    async with serve_app(busy) as app:
        answers = []
        for n in range(8):
            body = await puzzle(app, "81.2.69.9")
            fields = {"email": f"office{n}@example.com"}
            first = await app.client.post(SUBSCRIBE, data=fields, headers=from_ip("81.2.69.9"))
            if first.status_code == 403:
                assert body["required"] is True
                fields.update(paid(body))
                first = await app.client.post(SUBSCRIBE, data=fields, headers=from_ip("81.2.69.9"))
            answers.append((body["required"], first.status_code))
        assert answers == [(False, 202)] * 2 + [(True, 202)] * 4 + [(True, 429)] * 2
        # Another address is not affected.
        calm = await puzzle(app, "81.2.69.10")
        assert calm["required"] is False
        other = await app.client.post(
            SUBSCRIBE, data={"email": "home@example.com"}, headers=from_ip("81.2.69.10")
        )
        assert other.status_code == 202
        await smtp.wait_for(7)


async def test_the_hosted_page_brings_the_surges_puzzle(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    flooded = surging(settings, pow_surge_list=Rate(1, HOUR))
    html = {"Accept": "text/html", **from_ip("81.2.69.3")}
    await clear_of_window_end(HOUR)
    async with serve_app(flooded) as app:
        first = await app.client.post(SUBSCRIBE, data={"email": "first@example.com"})
        assert first.status_code == 202
        page = await app.client.get("/subscribe/daily", headers=html)
        found = re.search(r'name="pow_challenge" value="(daily\.\d+\.(\d+)\.[^"]+)"', page.text)
        assert found is not None and found.group(2) == "4"
        # Sent without its script having run: the reader is told what is needed.
        bare = await app.client.post(
            "/subscribe/daily", data={"email": "nojs@example.com"}, headers=html
        )
        assert bare.status_code == 403 and "needs JavaScript" in visible(bare)
        solved = {"pow_challenge": found.group(1), "pow_solution": solve(found.group(1), 4)}
        posted = await app.client.post(
            "/subscribe/daily", data={"email": "hosted@example.com", **solved}, headers=html
        )
        assert posted.status_code == 303
        mails = await smtp.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in mails) == ["first@example.com", "hosted@example.com"]


@pytest.mark.parametrize("value", ["1/1m,2/1h", "x", "0/1m"])
def test_a_surge_is_one_rate(value: str) -> None:
    with pytest.raises(SettingsError, match="NEWSLETTER_POW_SURGE_LIST"):
        Settings.from_env({"NEWSLETTER_POW_SURGE_LIST": value})
    defaults = Settings.from_env({})
    assert (defaults.pow_surge_list, defaults.pow_surge_client) == (Rate(60, 60), Rate(2, 60))
    assert (defaults.pow_difficulty, defaults.pow_difficulty_max) == (16, 19)
    assert defaults.rate_limit_list == ()
