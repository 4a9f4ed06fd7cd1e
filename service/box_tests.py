"""A/B tests of a list's subscribe box: variants of its copy and trigger, with weights.

A running test is kept in ``box_tests`` and mirrored into the list's box settings
(``widget["test"]``), so the widget's one settings request carries it: the box picks a
variant by weight, keeps it in the reader's local storage, and counts under its key
(service.box_counts). Keys are the test's id and a letter (``7a`` is test 7's control,
the list's own copy), so no two tests' counts ever mix.

Results are Bayesian (`compare`): each variant's rate of confirmations per view has a
Beta(1 + confirmed, 1 + views - confirmed) posterior (a uniform prior); the report gives
its 95 % credible interval and the probability that it beats the control. That
probability is what it says whenever it is read, so looking every day does not make a
fluke look surer, as repeated significance tests would; still, no winner is named before
every variant has ``MIN_VIEWS`` views, and then only at ``DECISIVE`` (95 %) or more.

Ending a test keeps it and its counts; promoting a variant copies its settings into the
list's box and ends the test in one step.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from service.box_stats import box_report
from service.db import Database
from service.errors import Refusal
from service.models import BoxTest, MailingList, utcnow
from service.widget_settings import validate_changes

__all__ = [
    "COPY_KEYS",
    "DECISIVE",
    "FORM_VARIANTS",
    "MIN_VIEWS",
    "Arm",
    "beta_interval",
    "end_test",
    "list_tests",
    "probability_to_beat",
    "promote",
    "results",
    "start_test",
]

COPY_KEYS = ("title", "text", "button", "trigger", "delay", "scroll")
MIN_VIEWS = 300  # views every variant needs before any winner is named
DECISIVE = 0.95  # probability to beat the control that names a winner
MAX_VARIANTS = 4  # besides the control
FORM_VARIANTS = 2  # variant rows on the admin page's form (the API takes up to four)


# The statistics -------------------------------------------------------------------------


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def probability_to_beat(a: tuple[int, int], b: tuple[int, int]) -> float:
    """P(rate of b > rate of a) for Beta posteriors with integer parameters ``(alpha,
    beta)``, exactly (the closed form for Beta distributions, summed in log space)."""
    alpha_a, beta_a = a
    alpha_b, beta_b = b
    total = 0.0
    for i in range(alpha_b):
        total += math.exp(
            _log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - _log_beta(1 + i, beta_b)
            - _log_beta(alpha_a, beta_a)
        )
    return min(1.0, max(0.0, total))


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b) (Lentz's continued fraction)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _incomplete_beta(1 - x, b, a)
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            numerator = 1.0
        elif i % 2 == 0:
            numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + numerator * d
        d = tiny if abs(d) < tiny else d
        d = 1 / d
        c = 1 + numerator / c
        c = tiny if abs(c) < tiny else c
        step = c * d
        f *= step
        if abs(1 - step) < 1e-12:
            break
    return front * (f - 1)


def beta_quantile(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), by bisection on its distribution function."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if _incomplete_beta(mid, a, b) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def beta_interval(successes: int, trials: int, mass: float = 0.95) -> tuple[float, float]:
    """The central credible interval of a rate, from a uniform prior."""
    a, b = 1 + successes, 1 + max(0, trials - successes)
    tail = (1 - mass) / 2
    return beta_quantile(tail, a, b), beta_quantile(1 - tail, a, b)


# Tests ------------------------------------------------------------------------------------


@dataclass
class Arm:
    """One variant's results."""

    key: str
    label: str
    weight: int
    settings: dict[str, Any]
    shown: int = 0
    submitted: int = 0
    confirmed: int = 0
    interval: tuple[float, float] = (0.0, 1.0)
    beats_control: float | None = None  # None for the control itself

    @property
    def rate(self) -> float | None:
        return self.confirmed / self.shown if self.shown else None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "weight": self.weight,
            "settings": self.settings,
            "shown": self.shown,
            "submitted": self.submitted,
            "confirmed": self.confirmed,
            "rate": self.rate,
            "credible_interval": list(self.interval),
            "probability_to_beat_control": self.beats_control,
        }


def _parse_variants(
    control_weight: Any, variants: Any
) -> list[dict[str, Any]]:  # raises ValueError
    if not isinstance(variants, list) or not 1 <= len(variants) <= MAX_VARIANTS:
        raise ValueError(f"variants: give 1 to {MAX_VARIANTS} variants besides the control")
    arms: list[dict[str, Any]] = [{"label": "control", "weight": _weight(control_weight)}]
    for n, variant in enumerate(variants, 1):
        if not isinstance(variant, Mapping):
            raise ValueError(f"variants[{n}]: must be an object")
        copy = {k: v for k, v in variant.items() if k in COPY_KEYS and v not in ("", None)}
        unknown = set(variant) - {*COPY_KEYS, "label", "weight"}
        if unknown:
            raise ValueError(f"variants[{n}]: unknown field {sorted(unknown)[0]!r}")
        if not copy:
            raise ValueError(f"variants[{n}]: change at least one of {', '.join(COPY_KEYS)}")
        try:
            clean = validate_changes(copy)
        except ValueError as exc:
            raise ValueError(f"variants[{n}]: {exc}") from None
        if clean.get("trigger") == "inline":
            raise ValueError(f"variants[{n}]: trigger: an inline box is placed by the page")
        label = str(variant.get("label") or f"variant {string.ascii_lowercase[n]}").strip()
        arms.append({"label": label[:60], "weight": _weight(variant.get("weight", 1)), **clean})
    return arms


def _weight(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("weight: must be a whole number from 1 to 100")
    try:
        weight = int(value)
    except ValueError:
        raise ValueError("weight: must be a whole number from 1 to 100") from None
    if not 1 <= weight <= 100:
        raise ValueError("weight: must be a whole number from 1 to 100")
    return weight


def _mirror(test: BoxTest) -> dict[str, Any]:
    """What the widget is sent: each variant's key, weight and settings."""
    return {
        "id": test.id,
        "variants": [{k: v for k, v in arm.items() if k != "label"} for arm in test.variants],
    }


async def start_test(
    db: Database, mailing_list: MailingList, name: str, control_weight: Any, variants: Any
) -> BoxTest:
    """Start a test of the list's box, or ValueError (bad variants, one running already)."""
    name = str(name or "").strip()
    if not name or len(name) > 100:
        raise ValueError("name: give the test a name of at most 100 characters")
    arms = _parse_variants(control_weight, variants)
    async with db.write() as session:
        ml = await session.get(MailingList, mailing_list.id, with_for_update=True)
        if ml is None:
            raise Refusal("The list is gone.", status=404)
        if (ml.widget or {}).get("test"):
            raise Refusal("A test is running on this list: end it first.", status=409)
        test = BoxTest(list_id=ml.id, name=name, variants=[], started_at=utcnow())
        session.add(test)
        await session.flush()
        test.variants = [
            {"key": f"{test.id}{string.ascii_lowercase[n]}", **arm} for n, arm in enumerate(arms)
        ]
        ml.widget = {**(ml.widget or {}), "test": _mirror(test)}
    return test


async def end_test(
    db: Database, mailing_list: MailingList, test_id: int, winner: str = ""
) -> BoxTest:
    """End the running test (its results stay); with ``winner``, the variant whose settings
    become the list's box settings."""
    async with db.write() as session:
        ml = await session.get(MailingList, mailing_list.id, with_for_update=True)
        test = await session.get(BoxTest, test_id)
        if ml is None or test is None or test.list_id != ml.id:
            raise Refusal("No such test on this list.", status=404)
        if test.ended_at is not None:
            if winner and test.winner != winner:
                raise Refusal("The test has ended already.", status=409)
            return test  # a repeat: nothing more to do
        widget = dict(ml.widget or {})
        widget.pop("test", None)
        if winner:
            arm = next((a for a in test.variants if a["key"] == winner), None)
            if arm is None:
                raise Refusal(f"The test has no variant {winner!r}.", status=422)
            widget.update({k: v for k, v in arm.items() if k in COPY_KEYS})
            test.winner = winner
        ml.widget = widget
        test.ended_at = utcnow()
    return test


async def promote(db: Database, mailing_list: MailingList, test_id: int, key: str) -> BoxTest:
    """One click: the variant's settings become the box's, and the test ends."""
    return await end_test(db, mailing_list, test_id, winner=key)


async def list_tests(db: Database, mailing_list: MailingList) -> list[BoxTest]:
    async with db.read() as session:
        found = await session.scalars(
            select(BoxTest).where(BoxTest.list_id == mailing_list.id).order_by(BoxTest.id.desc())
        )
        return list(found.all())


async def results(db: Database, test: BoxTest) -> dict[str, Any]:
    """Each variant's counts over the test's days, with its interval and its probability
    to beat the control, and the verdict (a winner only past the minimum sample)."""
    end = (test.ended_at or utcnow()).date()
    report = await box_report(db, test.list_id, test.started_at.date(), end)
    arms: list[Arm] = []
    for variant in test.variants:
        funnel = report.variants.get(variant["key"])
        counts = funnel.counts if funnel else {}
        shown, confirmed = counts.get("shown", 0), counts.get("confirmed", 0)
        arms.append(
            Arm(
                key=variant["key"],
                label=variant.get("label", ""),
                weight=int(variant.get("weight", 1)),
                settings={k: v for k, v in variant.items() if k in COPY_KEYS},
                shown=shown,
                submitted=counts.get("submitted", 0),
                confirmed=confirmed,
                interval=beta_interval(confirmed, shown),
            )
        )
    control = arms[0]
    for challenger in arms[1:]:
        challenger.beats_control = probability_to_beat(_posterior(control), _posterior(challenger))
    return {
        "id": test.id,
        "name": test.name,
        "started_at": test.started_at.isoformat(),
        "ended_at": test.ended_at.isoformat() if test.ended_at else None,
        "winner": test.winner,
        "verdict": verdict(arms),
        "variants": [arm.as_json() for arm in arms],
    }


def _posterior(arm: Arm) -> tuple[int, int]:
    return 1 + arm.confirmed, 1 + max(0, arm.shown - arm.confirmed)


def verdict(arms: Sequence[Arm]) -> dict[str, Any]:
    """Which variant wins, if one does yet, and why not otherwise."""
    short = [a.label for a in arms if a.shown < MIN_VIEWS]
    if short:
        return {
            "winner": None,
            "reason": f"too early: every variant needs {MIN_VIEWS} views "
            f"(not yet: {', '.join(short)})",
        }
    challengers = [a for a in arms[1:] if a.beats_control is not None]
    best = max(challengers, key=lambda a: a.beats_control or 0.0)
    if (best.beats_control or 0.0) >= DECISIVE:
        return {
            "winner": best.key,
            "reason": f"{best.label} beats the control with probability {best.beats_control:.0%}",
        }
    if all((a.beats_control or 0.0) <= 1 - DECISIVE for a in challengers):
        return {
            "winner": arms[0].key,
            "reason": f"the control beats every variant with probability {DECISIVE:.0%} or more",
        }
    return {"winner": None, "reason": f"no variant is {DECISIVE:.0%} likely to differ yet"}
