"""Rate limits kept in the database, so every process of a deployment counts together.

A limit is one or more rates such as ``10/1m,60/1h``. Each hit adds one to a counter per
rate and fixed window (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, one statement
on SQLite and PostgreSQL alike); a hit over any rate is refused with the seconds until
its window ends. Fixed windows can let through up to twice a rate across a window
boundary, which is the price of one row per key and window.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.sql import Executable

from service.db import Write, Writes, upsert
from service.models import RateCounter
from service.settings import Rate

__all__ = [
    "CONFIRMATIONS",
    "add",
    "add_one",
    "canonical_address",
    "client_key",
    "count",
    "list_key",
    "recent",
    "reserve",
]

# The service-wide cap on confirmation emails (NEWSLETTER_RATE_LIMIT_CONFIRMATIONS) counts
# under this key: signups (``service.intake``) and imports alike.
CONFIRMATIONS = "service:confirmations"


def add(
    hits: Iterable[tuple[str, int, tuple[Rate, ...]]], now: datetime
) -> Writes[dict[str, list[float | None]]]:
    """Count hits on several keys, each ``(key, how many, its rates)``, in one statement.

    For each key, one entry per hit in order: None if every rate allows it, else the
    seconds until it would be allowed. A batch of writes (see `service.db.batch`), so that
    a batch of signups can be counted and stored in one trip (`Database.write_batch`);
    in a session's transaction, ``await run(session, add(...))``.
    """
    stamp = now.timestamp()
    merged: dict[str, tuple[int, tuple[Rate, ...]]] = {}
    for key, count, rates in hits:  # a key given twice is counted once, with both counts
        merged[key] = (merged.get(key, (0, rates))[0] + count, rates)
    # One order everywhere: concurrent upserts lock rows alike.
    asked = [(key, *merged[key]) for key in sorted(merged)]
    rows: dict[str, dict[str, object]] = {}  # by counter: one row per key and window
    for key, count, rates in asked:
        for rate in rates:
            window = _window(stamp, rate)
            rows[_counter(key, rate)] = {
                "key": _counter(key, rate),
                "window_start": window,
                "hits": count,
                # Kept a window longer: `recent` reads the previous window too.
                "expires_at": _at(window + 2 * rate.seconds),
            }
    waits: dict[str, list[float | None]] = {key: [None] * count for key, count, _ in asked}
    if not rows:
        return waits
    result = yield Write(_count_hits, list(rows.values()))
    totals: dict[str, int] = {row.key: row.hits for row in result}
    for key, count, rates in asked:
        for rate in rates:
            ends = _window(stamp, rate) + rate.seconds
            first = totals[_counter(key, rate)] - count + 1  # the running count of hit 0
            for i in range(count):
                if first + i > rate.hits:
                    waits[key][i] = max(waits[key][i] or 0.0, ends - stamp)
    return waits


@functools.cache
def _count_hits(dialect: str) -> Executable:
    """The counting statement, built once: building one costs more than running it."""
    return upsert(
        dialect,
        RateCounter,
        key=[RateCounter.key, RateCounter.window_start],
        set_=lambda new: {"hits": RateCounter.hits + new.hits},
    ).returning(RateCounter.key, RateCounter.hits)


def add_one(key: str, rates: tuple[Rate, ...], now: datetime) -> Writes[float | None]:
    """Count one hit on ``key``; None if every rate allows it, else seconds to wait."""
    return (yield from add([(key, 1, rates)], now))[key][0]


def count(key: str, rate: Rate, now: datetime) -> Writes[int]:
    """Hits on ``key`` in the current window of ``rate``, without adding one."""
    found = yield Write(
        select(func.coalesce(func.sum(RateCounter.hits), 0))
        .where(RateCounter.key == _counter(key, rate))
        .where(RateCounter.window_start == _window(now.timestamp(), rate))
    )
    return int(found.scalar() or 0)


def recent(keys: Iterable[str], seconds: int, now: datetime) -> Writes[dict[str, float]]:
    """Hits on each key over the last ``seconds``, estimated from the fixed windows of a
    rate of that length: the current window's count and the part of the previous one that
    the last ``seconds`` still cover (no drop to zero when a window turns)."""
    stamp = now.timestamp()
    current = _window(stamp, Rate(1, seconds))
    names = {_counter(key, Rate(1, seconds)): key for key in keys}
    found = yield Write(
        select(RateCounter.key, RateCounter.window_start, RateCounter.hits)
        .where(RateCounter.key.in_(sorted(names)))
        .where(RateCounter.window_start.in_([current - seconds, current]))
    )
    left = 1.0 - (stamp - current) / seconds  # of the previous window, still in view
    totals = dict.fromkeys(names.values(), 0.0)
    for row in found:
        totals[names[row.key]] += row.hits if row.window_start == current else row.hits * left
    return totals


def reserve(key: str, hits: int, rates: tuple[Rate, ...], now: datetime) -> Writes[list[datetime]]:
    """Count ``hits`` on ``key`` at the earliest windows with room; when each may happen.

    The first hits fall in the current windows while every rate has room, the rest in the
    next windows that do, counted there now: whoever counts in those windows later (a
    signup, another import) finds them already taken, so the rates hold for all together.
    One time per hit, in order: ``now`` or the start of a later window.
    """
    times: list[datetime] = []
    at = now
    while len(times) < hits and rates:
        room = hits - len(times)
        for rate in rates:
            room = min(room, rate.hits - (yield from count(key, rate, at)))
        if room > 0:
            waits = (yield from add([(key, room, rates)], at))[key]
            times.extend(at for wait in waits if wait is None)  # a race may take some
        ends: list[int] = []  # when the windows that are full now end
        for rate in rates:
            if (yield from count(key, rate, at)) >= rate.hits:
                ends.append(_window(at.timestamp(), rate) + rate.seconds)
        if ends:
            at = datetime.fromtimestamp(min(ends), UTC)
    times.extend([now] * (hits - len(times)))  # no rates: no cap
    return times


def client_key(ip: str | None) -> str:
    """The counters of one client address."""
    return f"client:{ip}"


def list_key(list_id: int) -> str:
    """The counters of one list, all clients together."""
    return f"list:{list_id}"


def _counter(key: str, rate: Rate) -> str:
    """The counter of ``key`` for ``rate``: one per rate, as rates may share a window."""
    return f"{key}|{rate.seconds}"


def _window(stamp: float, rate: Rate) -> int:
    """When the fixed window of ``rate`` that holds ``stamp`` began."""
    return int(stamp // rate.seconds) * rate.seconds


def _at(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC) + timedelta(seconds=1)


# Providers that deliver ``first.last@`` and ``firstlast@`` to the same inbox.
_DOTLESS = {"gmail.com", "googlemail.com"}


def canonical_address(email: str) -> str:
    """The inbox an address reaches, as far as limits are concerned.

    Case never matters; a ``+tag`` is dropped everywhere (most mail servers deliver
    ``me+x@`` to ``me@``, and a stricter key only makes a limit stricter); dots are dropped
    where the provider ignores them.
    """
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain == "googlemail.com":
        domain = "gmail.com"
    if domain in _DOTLESS:
        local = local.replace(".", "")
    return f"{local}@{domain}"
