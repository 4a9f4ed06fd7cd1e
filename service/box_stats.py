"""What the box's counts say: the funnel, the days, the pages and the variants of a list.

Read from ``box_counts`` (service.box_counts) over a date range and, if asked, one device
class. Rates are of the box's views (``shown``). Ranked by conversion, pages with at least
``MIN_VIEWS`` views come first, each group by the lower bound of the Wilson score interval
(95 %) of confirmations per view: a page with three views and one signup does not top a
page with 3,000 views and 90.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from service.box_counts import DEVICES, EVENTS
from service.db import Database
from service.models import BoxCount

__all__ = [
    "MAX_RANGE_DAYS",
    "MIN_VIEWS",
    "BoxReport",
    "Funnel",
    "box_report",
    "check_device",
    "date_range",
    "wilson_lower",
]

MAX_RANGE_DAYS = 366
MIN_VIEWS = 100  # views a page needs to be ranked by conversion among the others
Z95 = 1.959963984540054


def wilson_lower(successes: int, trials: int, z: float = Z95) -> float:
    """The lower bound of the Wilson score interval for successes / trials (0 if none)."""
    if trials <= 0:
        return 0.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, (centre - margin) / denominator)


@dataclass
class Funnel:
    """Counts per event, and the rates of the steps that matter to an editor."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))

    def add(self, event: str, n: int) -> None:
        self.counts[event] = self.counts.get(event, 0) + n

    def rate(self, event: str, of: str = "shown") -> float | None:
        base = self.counts.get(of, 0)
        return self.counts.get(event, 0) / base if base else None

    def as_json(self) -> dict[str, Any]:
        return {
            **self.counts,
            "submitted_rate": self.rate("submitted"),
            "confirmed_rate": self.rate("confirmed"),
            "confirmed_of_submitted": self.rate("confirmed", "submitted"),
        }


@dataclass
class BoxReport:
    start: date
    end: date
    device: str | None
    funnel: Funnel
    days: dict[date, Funnel]
    pages: dict[str, Funnel]
    variants: dict[str, Funnel]

    def pages_by(self, order: str) -> list[tuple[str, Funnel]]:
        """Pages by confirmations (``count``) or by conversion (``conversion``)."""
        if order == "conversion":

            def key(item: tuple[str, Funnel]) -> tuple[float, ...]:
                f = item[1]
                shown = f.counts["shown"]
                return (shown >= MIN_VIEWS, wilson_lower(f.counts["confirmed"], shown), shown)

        else:

            def key(item: tuple[str, Funnel]) -> tuple[float, ...]:
                f = item[1]
                return (f.counts["confirmed"], f.counts["shown"])

        return sorted(self.pages.items(), key=lambda item: (key(item), item[0]), reverse=True)

    def as_json(self, order: str = "count") -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "device": self.device,
            "funnel": self.funnel.as_json(),
            "days": [
                {"day": day.isoformat(), **self.days[day].as_json()} for day in sorted(self.days)
            ],
            "pages": [
                {
                    "page": page,
                    **f.as_json(),
                    "conversion_lower_bound": wilson_lower(
                        f.counts["confirmed"], f.counts["shown"]
                    ),
                }
                for page, f in self.pages_by(order)
            ],
            "variants": [
                {"variant": variant or "control", **f.as_json()}
                for variant, f in sorted(self.variants.items())
            ],
        }


def date_range(start: str | None, end: str | None, today: date) -> tuple[date, date]:
    """The range asked for (ISO dates, both ends included; the last 30 days by default),
    or ValueError saying what is wrong with it."""
    try:
        for given in (start, end):
            if given and not (len(given) == 10 and given[4] == "-" and given[7] == "-"):
                raise ValueError(given)  # fromisoformat takes 20261201 too; the API does not
        last = date.fromisoformat(end) if end else today
        first = date.fromisoformat(start) if start else last - timedelta(days=29)
    except ValueError:
        raise ValueError("from and to must be dates such as 2026-12-01") from None
    if first > last:
        raise ValueError("from must not be after to")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise ValueError(f"the range must be at most {MAX_RANGE_DAYS} days")
    return first, last


def check_device(device: str | None) -> str | None:
    if device in (None, "", "all"):
        return None
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or all)")
    return device


async def box_report(
    db: Database, list_id: int, start: date, end: date, device: str | None = None
) -> BoxReport:
    query = (
        select(
            BoxCount.day,
            BoxCount.page,
            BoxCount.variant,
            BoxCount.event,
            func.sum(BoxCount.count),
        )
        .where(BoxCount.list_id == list_id, BoxCount.day >= start, BoxCount.day <= end)
        .group_by(BoxCount.day, BoxCount.page, BoxCount.variant, BoxCount.event)
    )
    if device is not None:
        query = query.where(BoxCount.device == device)
    report = BoxReport(start, end, device, Funnel(), {}, {}, {})
    async with db.read() as session:
        for day, page, variant, event, n in await session.execute(query):
            n = int(n)
            report.funnel.add(event, n)
            report.days.setdefault(day, Funnel()).add(event, n)
            report.pages.setdefault(page, Funnel()).add(event, n)
            report.variants.setdefault(variant, Funnel()).add(event, n)
    return report
