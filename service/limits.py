"""Rate limits kept in the database, so every process of a deployment counts together.

A limit is one or more rates such as ``10/1m,60/1h``. Each hit adds one to a counter per
rate and fixed window (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, one statement
on SQLite and PostgreSQL alike); a hit over any rate is refused with the seconds until
its window ends. Fixed windows can let through up to twice a rate across a window
boundary, which is the price of one row per key and window.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import RateCounter

__all__ = ["Rate", "canonical_address", "count", "hit", "hits", "parse_rates", "retry_after"]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


@dataclass(frozen=True)
class Rate:
    hits: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.hits}/{self.seconds}s"


def parse_rates(value: str) -> tuple[Rate, ...]:
    """``"10/1m,60/1h"`` -> rates; empty means no limit."""
    from service.settings import parse_duration

    rates = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        match = _RATE.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a rate such as 10/1m")
        seconds = parse_duration(match.group(2))
        if seconds < 1 or int(match.group(1)) < 1:
            raise ValueError(f"{part!r}: expected at least 1 per 1s")
        rates.append(Rate(int(match.group(1)), int(seconds)))
    return tuple(rates)


async def _add(
    session: AsyncSession, key: str, window: int, expires: datetime, count: int = 1
) -> int:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(RateCounter).values(
        key=key, window_start=window, hits=count, expires_at=expires
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[RateCounter.key, RateCounter.window_start],
        set_={"hits": RateCounter.hits + count},
    ).returning(RateCounter.hits)
    hits: int = (await session.execute(upsert)).scalar_one()
    return hits


async def hit(
    session: AsyncSession, key: str, rates: tuple[Rate, ...], now: datetime
) -> float | None:
    """Count one hit on ``key``; None if every rate allows it, else seconds to wait."""
    return (await hits(session, key, rates, now, 1))[0]


async def hits(
    session: AsyncSession, key: str, rates: tuple[Rate, ...], now: datetime, count: int
) -> list[float | None]:
    """Count ``count`` hits on ``key`` in one statement per rate; for each, as ``hit``."""
    waits: list[float | None] = [None] * count
    stamp = now.timestamp()
    for rate in rates:
        window = int(stamp // rate.seconds) * rate.seconds
        ends = window + rate.seconds
        total = await _add(session, f"{key}|{rate.seconds}", window, _at(ends), count)
        first = total - count + 1  # the running count of this batch's first hit
        for i in range(count):
            if first + i > rate.hits:
                waits[i] = max(waits[i] or 0.0, ends - stamp)
    return waits


async def count(session: AsyncSession, key: str, rate: Rate, now: datetime) -> int:
    """Hits on ``key`` in the current window of ``rate``, without adding one."""
    window = int(now.timestamp() // rate.seconds) * rate.seconds
    found = await session.scalar(
        select(func.coalesce(func.sum(RateCounter.hits), 0))
        .where(RateCounter.key == f"{key}|{rate.seconds}")
        .where(RateCounter.window_start == window)
    )
    return int(found or 0)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


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
