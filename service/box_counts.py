"""Counting what the subscribe box does, privately and cheaply.

The box reports ``shown``, ``dismissed`` and ``submitted`` (``navigator.sendBeacon``); the
service adds ``accepted`` (a signup answered 202) and ``confirmed``. Each count is kept per
list, day (UTC), page path, copy variant and device class (``phone`` or ``larger``), and
nothing else: no cookie, no identifier, no address, no row per reader or per event.

The request path only adds to a dictionary in memory; `BoxCounter.flush` writes what was
added up, one upsert per key, every ``NEWSLETTER_BOX_FLUSH_INTERVAL`` (a crash loses at
most that long's counts of that process). Confirmations are rare and already a write: they
are counted in the confirming transaction (`count_confirmed`), credited to the page and
variant of the signup that produced them (``box_source`` on the subscription).

Pages are capped: once a list has ``NEWSLETTER_BOX_PAGES_PER_DAY`` pages on a day, further
new pages that day are counted as ``OTHER``, so invented paths cannot grow storage.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from service.db import Database, Write, Writes, run, upsert
from service.models import BoxCount, MailingList, utcnow

__all__ = [
    "BOX_EVENTS",
    "DEVICES",
    "EVENTS",
    "OTHER",
    "BoxCounter",
    "Where",
    "count_confirmed",
    "list_variants",
    "parse_event",
    "signup_source",
]

log = logging.getLogger(__name__)

BOX_EVENTS = ("shown", "dismissed", "submitted")  # what the box reports
EVENTS = (*BOX_EVENTS, "accepted", "confirmed")  # and what the service adds
DEVICES = ("phone", "larger")
OTHER = "(other)"
MAX_PAGE = 256
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
VARIANT = re.compile(r"^(?:[a-z0-9][a-z0-9_-]{0,31})?$")
CONTROL = ""  # the list's own copy, when no test runs (shown as "control" in a test)

Key = tuple[int, date, str, str, str, str]  # list id, day, page, variant, device, event


@dataclass(frozen=True)
class Where:
    """Where the box was: the page's path, the copy's variant, the device class."""

    page: str
    variant: str
    device: str

    def encode(self) -> str:
        return f"{self.device}|{self.variant}|{self.page}"

    @classmethod
    def decode(cls, text: str | None) -> Where | None:
        if not text:
            return None
        device, _, rest = text.partition("|")
        variant, _, page = rest.partition("|")
        return cls(page, variant, device) if device in DEVICES and page else None


def list_variants(mailing_list: MailingList) -> list[str]:
    """The variant keys of the list's running A/B test (none: no test runs)."""
    test = (mailing_list.widget or {}).get("test") or {}
    return [str(v.get("key", "")) for v in test.get("variants", []) if isinstance(v, dict)]


def page_path(value: str) -> str:
    """The path of a page's URL (or a path): no scheme, host, query or fragment."""
    path = value
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = path.split("#", 1)[0].split("?", 1)[0]
    if not path.startswith("/"):
        raise ValueError("p: the page's path must start with /")
    if len(path) > MAX_PAGE:
        raise ValueError(f"p: the page's path must be at most {MAX_PAGE} characters")
    if CONTROL_CHARS.search(path):
        raise ValueError("p: the page's path must not contain control characters")
    return path


def _where(page: str, variant: str, device: str) -> Where:
    if device not in DEVICES:
        raise ValueError(f"d: the device class must be one of {', '.join(DEVICES)}")
    if not VARIANT.match(variant):
        raise ValueError("v: the variant must be a variant's key (a-z, 0-9, - and _) or empty")
    return Where(page_path(page), variant, device)


def parse_event(fields: Mapping[str, str], variants: Iterable[str]) -> tuple[str, Where]:
    """The event and where the box was, from the box's report, or ValueError saying what is
    wrong. ``variants``: the keys the list's tests use (others are refused)."""
    missing = [name for name in ("e", "p", "d") if not fields.get(name)]
    if missing:
        raise ValueError(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    event = fields["e"]
    if event not in BOX_EVENTS:
        raise ValueError(f"e: the event must be one of {', '.join(BOX_EVENTS)}")
    where = _where(fields["p"], fields.get("v", ""), fields["d"])
    if where.variant and where.variant not in set(variants):
        raise ValueError(f"v: the list has no variant {where.variant!r}")
    return event, where


def signup_source(box: object, page_url: str | None, variants: Iterable[str]) -> Where | None:
    """Where a signup's box was (its ``box`` field, ``device:variant``, and its page), or
    None: a signup is never refused over its counting, it is just not counted."""
    if not isinstance(box, str) or not page_url:
        return None
    device, _, variant = box.partition(":")
    try:
        where = _where(page_url, variant, device)
    except ValueError:
        return None
    if where.variant and where.variant not in set(variants):
        where = Where(where.page, CONTROL, where.device)
    return where


class BoxCounter:
    """Counts added up in this process's memory, written in batches."""

    def __init__(self, db: Database, pages_per_day: int) -> None:
        self._db = db
        self._pages_per_day = pages_per_day
        self._counts: Counter[Key] = Counter()
        # Pages stored or seen since, per list and day: capped here too, so a flood of
        # invented pages cannot grow memory between writes either.
        self._pages: defaultdict[tuple[int, date], set[str]] = defaultdict(set)

    def add(self, list_id: int, event: str, where: Where, now: datetime | None = None) -> None:
        day = (now or utcnow()).date()
        pages = self._pages[(list_id, day)]
        page = where.page
        if page not in pages:
            if len(pages) >= self._pages_per_day:
                page = OTHER
            pages.add(page)
        self._counts[(list_id, day, page, where.variant, where.device, event)] += 1

    @property
    def pending(self) -> int:
        """Counts not written yet (what a crash now would lose)."""
        return sum(self._counts.values())

    async def flush(self) -> int:
        """Write what was added up; on failure, keep it for the next try."""
        counts, self._counts = self._counts, Counter()
        if not counts:
            return 0
        try:
            stored = await self._db.write_batch(lambda: _store(counts, self._pages_per_day))
        except Exception:
            for key, n in counts.items():
                self._counts[key] += n
            raise
        # What the table holds now, for the days still being counted.
        today = utcnow().date()
        pages = defaultdict(set, {k: v for k, v in stored.items() if k[1] >= today})
        for key in self._counts:
            pages[(key[0], key[1])].add(key[2])
        self._pages = pages
        return sum(counts.values())

    async def run(self, interval: float) -> None:
        """Write every ``interval`` seconds until cancelled (the lifespan writes the rest)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("box counts not written; kept for the next try")


def _store(
    counts: Mapping[Key, int], pages_per_day: int
) -> Writes[dict[tuple[int, date], set[str]]]:
    """Add ``counts`` to the table, new pages past the day's cap counted as ``OTHER``;
    returns the pages each list and day has now."""
    by_day: defaultdict[tuple[int, date], Counter[str]] = defaultdict(Counter)
    for (list_id, day, page, *_), n in counts.items():
        by_day[(list_id, day)][page] += n
    renamed: dict[tuple[int, date, str], str] = {}
    now_known: dict[tuple[int, date], set[str]] = {}
    for (list_id, day), pages in by_day.items():
        known = set(
            (
                yield Write(
                    select(BoxCount.page)
                    .where(BoxCount.list_id == list_id, BoxCount.day == day)
                    .distinct()
                )
            ).scalars()
        )
        known.discard(OTHER)
        room = pages_per_day - len(known)
        # The busiest new pages keep their names.
        for page, _ in pages.most_common():
            if page in known or page == OTHER:
                continue
            if room > 0:
                room -= 1
                known.add(page)
            else:
                renamed[(list_id, day, page)] = OTHER
        now_known[(list_id, day)] = known
    rows: Counter[Key] = Counter()
    for (list_id, day, page, variant, device, event), n in counts.items():
        page = renamed.get((list_id, day, page), page)
        rows[(list_id, day, page, variant, device, event)] += n
    yield Write(
        _add_counts,
        [
            {
                "list_id": list_id,
                "day": day,
                "page": page,
                "variant": variant,
                "device": device,
                "event": event,
                "count": n,
            }
            for (list_id, day, page, variant, device, event), n in sorted(rows.items())
        ],
    )
    return now_known


def _add_counts(dialect: str) -> Executable:
    return upsert(
        dialect,
        BoxCount,
        key=[
            BoxCount.list_id,
            BoxCount.day,
            BoxCount.page,
            BoxCount.variant,
            BoxCount.device,
            BoxCount.event,
        ],
        set_=lambda new: {BoxCount.count: BoxCount.count + new.count},
    )


async def count_confirmed(
    session: AsyncSession, list_id: int, source: str | None, pages_per_day: int
) -> None:
    """Count a confirmation where its signup's box was, in the confirming transaction."""
    where = Where.decode(source)
    if where is None:
        return
    key: Key = (list_id, utcnow().date(), where.page, where.variant, where.device, "confirmed")
    await run(session, _store({key: 1}, pages_per_day))


def count_confirmed_in_batch(list_id: int, source: str | None, pages_per_day: int) -> Writes[None]:
    """`count_confirmed` as statements of a batch (the worker acts on signups in one)."""
    where = Where.decode(source)
    if where is None:
        return
    key: Key = (list_id, utcnow().date(), where.page, where.variant, where.device, "confirmed")
    yield from _store({key: 1}, pages_per_day)
