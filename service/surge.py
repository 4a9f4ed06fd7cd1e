"""Under a flood, the cost of a signup rises for everyone instead of the door closing.

A list taking signups faster than ``NEWSLETTER_POW_SURGE_LIST`` (all clients together), or
a client address faster than ``NEWSLETTER_POW_SURGE_CLIENT``, asks every signup for a
proof of work, whatever else it carries: a fresh form stamp per request buys a bot
nothing. The difficulty starts at ``NEWSLETTER_POW_DIFFICULTY`` and adds one bit (twice
the work) each time the rate doubles, up to ``NEWSLETTER_POW_DIFFICULTY_MAX``, which a
browser solves in about a second. A reader pays that once; a flood pays it per request,
so what it gets accepted is bounded by the hashes it computes. Only signups that got in
are counted, so the level settles where the flood can pay, and falls when it stops.

The rates come from the counters the intake keeps (``service.limits``, shared by every
process of a deployment), over the last window of the surge rate; each process keeps what
it read for ``NEWSLETTER_LIST_CACHE_TTL`` (2 s), so a flood of hundreds a second costs a
small read every two seconds per list (and one per new client address).
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict

from service import limits
from service.db import Database, run
from service.models import utcnow
from service.settings import Rate, Settings

__all__ = ["Surge", "bits", "counting", "least"]

_CACHE_SIZE = 10_000  # entries kept before the expired ones are swept
_COUNT_ONLY = sys.maxsize  # a count no window reaches: counted, never refused


def counting(rate: Rate | None) -> tuple[Rate, ...]:
    """The rate the intake counts signups under for a surge rate: its window, no refusal."""
    return () if rate is None else (Rate(_COUNT_ONLY, rate.seconds),)


def bits(recent: float, surge: Rate | None, base: int, top: int) -> int:
    """The difficulty a recent rate asks for: 0 below the surge rate, ``base`` at it, one
    bit more per doubling above it, at most ``top``."""
    if surge is None or recent < surge.hits:
        return 0
    return min(max(top, base), base + int(math.log2(recent / surge.hits)))


def least(asked: int, base: int) -> int:
    """The easiest challenge taken while ``asked`` is in force: one level lower, so that a
    reader whose challenge was handed out just before the level stepped up is not turned
    back (a flood saves at most half its work by it)."""
    return max(base, asked - 1)


class Surge:
    """The proof of work a signup must pay now, from its list's and its client's rates."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._seen: dict[str, tuple[float, float]] = {}  # key: (kept until, recent hits)

    async def difficulty(self, list_id: int, ip: str | None) -> int:
        """Bits of proof of work asked of a signup on this list from this client; 0: none."""
        settings = self._settings
        asked = {
            limits.list_key(list_id): settings.pow_surge_list,
            limits.client_key(ip): settings.pow_surge_client if ip else None,
        }
        rates = {key: rate for key, rate in asked.items() if rate is not None}
        recent = await self._recent(rates)
        return max(
            (
                bits(recent[key], rate, settings.pow_difficulty, settings.pow_difficulty_max)
                for key, rate in rates.items()
            ),
            default=0,
        )

    async def _recent(self, rates: dict[str, Rate]) -> dict[str, float]:
        """Recent hits per key, from this process's last look if it is fresh enough."""
        clock = time.monotonic()
        found: dict[str, float] = {}
        missing: defaultdict[int, list[str]] = defaultdict(list)  # by window length
        for key, rate in rates.items():
            kept = self._seen.get(key)
            if kept is not None and kept[0] > clock:
                found[key] = kept[1]
            else:
                missing[rate.seconds].append(key)
        if missing:
            now = utcnow()
            async with self._db.read() as session:
                for seconds, keys in missing.items():
                    found.update(await run(session, limits.recent(keys, seconds, now)))
            if len(self._seen) > _CACHE_SIZE:
                self._seen = {k: v for k, v in self._seen.items() if v[0] > clock}
            for keys in missing.values():
                for key in keys:
                    self._seen[key] = (clock + self._settings.list_cache_ttl, found[key])
        return found
