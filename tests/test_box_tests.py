"""A/B tests of the box: the statistics against known cases, and a test's life in the admin
API (start, counts per variant, no winner before the minimum sample, promote, end)."""

from __future__ import annotations

import random

import pytest
from support import Running, bearer

from service.box_counts import BoxCounter, Where
from service.box_tests import (
    MIN_VIEWS,
    Arm,
    beta_interval,
    beta_quantile,
    probability_to_beat,
    verdict,
)
from service.lists import get_list

TESTS = "/api/v1/admin/lists/daily/tests"
EVENTS = "/api/v1/lists/daily/events"
SITE = {"Origin": "https://www.example.com"}


def test_probability_to_beat_known_cases() -> None:
    # Beta(1,1) against itself: a coin toss.
    assert probability_to_beat((1, 1), (1, 1)) == pytest.approx(0.5, abs=1e-12)
    # Beta(1,2) (density 2(1-x)) against Beta(2,1) (density 2x): 5/6, by integration.
    assert probability_to_beat((1, 2), (2, 1)) == pytest.approx(5 / 6, abs=1e-12)
    assert probability_to_beat((2, 1), (1, 2)) == pytest.approx(1 / 6, abs=1e-12)
    # Symmetry: P(b > a) + P(a > b) = 1 (continuous distributions).
    a, b = (31, 971), (45, 957)
    assert probability_to_beat(a, b) + probability_to_beat(b, a) == pytest.approx(1, abs=1e-9)
    # Against a Monte Carlo estimate (fixed seed): 3.0 % vs 4.4 % on 1,000 views each.
    rng = random.Random(7)
    draws = 100_000
    wins = sum(rng.betavariate(*b) > rng.betavariate(*a) for _ in range(draws))
    assert probability_to_beat(a, b) == pytest.approx(wins / draws, abs=0.01)


def test_credible_intervals_known_cases() -> None:
    # Beta(1,1) is uniform: its quantiles are themselves.
    assert beta_quantile(0.025, 1, 1) == pytest.approx(0.025, abs=1e-9)
    # Beta(2,2) is symmetric about 1/2; Beta(1, b)'s quantile is 1 - (1-q)^(1/b).
    assert beta_quantile(0.5, 2, 2) == pytest.approx(0.5, abs=1e-9)
    assert beta_quantile(0.9, 1, 5) == pytest.approx(1 - 0.1 ** (1 / 5), abs=1e-9)
    # 30 of 1,000: about 2.1 % to 4.3 % (normal approximation as a rough check).
    low, high = beta_interval(30, 1000)
    assert 0.020 < low < 0.022 and 0.041 < high < 0.044
    assert beta_interval(0, 0) == pytest.approx((0.025, 0.975), abs=1e-9)


def arm(key: str, shown: int, confirmed: int, control: Arm | None = None) -> Arm:
    made = Arm(key, key, 1, {}, shown=shown, confirmed=confirmed)
    if control is not None:
        made.beats_control = probability_to_beat(
            (1 + control.confirmed, 1 + control.shown - control.confirmed),
            (1 + confirmed, 1 + shown - confirmed),
        )
    return made


def test_no_winner_before_the_minimum_sample_however_lopsided() -> None:
    control = arm("1a", MIN_VIEWS - 1, 0)
    challenger = arm("1b", MIN_VIEWS - 1, 60, control)
    assert challenger.beats_control is not None and challenger.beats_control > 0.999
    decided = verdict([control, challenger])
    assert decided["winner"] is None and "too early" in decided["reason"]
    control = arm("1a", 2000, 60)
    assert verdict([control, arm("1b", 2000, 95, control)])["winner"] == "1b"
    assert verdict([control, arm("1b", 2000, 64, control)])["winner"] is None
    assert verdict([control, arm("1b", 2000, 30, control)])["winner"] == "1a"


async def test_a_tests_life_start_count_results_promote(admin: Running, token: str) -> None:
    app = admin
    auth = bearer(token)
    bad = await app.client.post(
        TESTS, json={"name": "x", "variants": [{"title": ""}]}, headers=auth
    )
    assert bad.status_code == 422 and "change at least one" in bad.json()["message"]
    bad = await app.client.post(
        TESTS, json={"name": "x", "variants": [{"trigger": "sideways"}]}, headers=auth
    )
    assert bad.status_code == 422 and "trigger" in bad.json()["message"]
    started = await app.client.post(
        TESTS,
        json={
            "name": "Shorter title",
            "control_weight": 1,
            "variants": [{"label": "short", "title": "News, daily", "weight": 1}],
        },
        headers=auth,
    )
    assert started.status_code == 201, started.text
    test = started.json()
    control_key, short_key = (v["key"] for v in test["variants"])
    again = await app.client.post(
        TESTS, json={"name": "Two", "variants": [{"title": "x"}]}, headers=auth
    )
    assert again.status_code == 409

    # The box is sent the test; its variants' keys are now counted, others refused.
    config = (await app.client.get("/api/v1/lists/daily/widget")).json()
    assert [v["key"] for v in config["settings"]["test"]["variants"]] == [control_key, short_key]
    assert config["settings"]["test"]["variants"][1]["title"] == "News, daily"
    for key, views in ((control_key, 3), (short_key, 2)):
        for _ in range(views):
            sent = await app.client.post(
                EVENTS, data={"e": "shown", "p": "/x", "v": key, "d": "phone"}, headers=SITE
            )
            assert sent.status_code == 204
    results = (await app.client.get(TESTS, headers=auth)).json()["tests"][0]
    assert [(v["key"], v["shown"]) for v in results["variants"]] == [
        (control_key, 3),
        (short_key, 2),
    ]
    assert results["verdict"]["winner"] is None and "too early" in results["verdict"]["reason"]
    assert results["variants"][1]["probability_to_beat_control"] == pytest.approx(
        probability_to_beat((1, 4), (1, 3))
    )

    # Promote in one click: the list's box takes the variant's title; the test ends and
    # keeps its results.
    promoted = await app.client.post(
        f"{TESTS}/{test['id']}/promote", json={"variant": short_key}, headers=auth
    )
    assert promoted.status_code == 200 and promoted.json()["winner"] == short_key
    box = (await app.client.get("/api/v1/admin/lists/daily", headers=auth)).json()["box"]
    assert box["title"] == "News, daily" and "test" not in box
    config = (await app.client.get("/api/v1/lists/daily/widget")).json()
    assert "test" not in config["settings"]
    late = await app.client.post(
        EVENTS, data={"e": "shown", "p": "/x", "v": short_key, "d": "phone"}, headers=SITE
    )
    assert late.status_code == 422, "an ended test's variants are not counted any more"
    kept = (await app.client.get(TESTS, headers=auth)).json()["tests"][0]
    assert kept["ended_at"] and [v["shown"] for v in kept["variants"]] == [3, 2]
    repeat = await app.client.post(f"{TESTS}/{test['id']}/end", headers=auth)
    assert repeat.status_code == 200, "ending twice is a harmless repeat"
    assert (await app.client.post(f"{TESTS}/999/end", headers=auth)).status_code == 404
    assert (await app.client.post(f"{TESTS}/x/end", headers=auth)).status_code == 404


async def test_the_admin_page_starts_shows_and_ends_a_test(admin: Running, token: str) -> None:
    app = admin
    auth = bearer(token)
    form = {
        "name": "Button words",
        "control_weight": "1",
        "label_1": "join",
        "button_1": "Join us",
        "weight_1": "3",
    }
    started = await app.client.post("/admin/lists/daily/box/tests", data=form, headers=auth)
    assert started.status_code == 303
    daily = await get_list(app.db, "daily")
    assert daily is not None
    key = daily.widget["test"]["variants"][1]["key"]
    counter = BoxCounter(app.db, 100)
    for _ in range(4):
        counter.add(daily.id, "shown", Where("/a", key, "larger"))
    counter.add(daily.id, "confirmed", Where("/a", key, "larger"))
    await counter.flush()
    page = await app.client.get("/admin/lists/daily/box", headers=auth)
    assert "Button words" in page.text and "Join us" in page.text and "running" in page.text
    assert "25.0 %" in page.text
    ended = await app.client.post(
        f"/admin/lists/daily/box/tests/{daily.widget['test']['id']}/end", headers=auth
    )
    assert ended.status_code == 303
    page = await app.client.get("/admin/lists/daily/box", headers=auth)
    assert "Button words" in page.text and "Start a test" in page.text
