"""Mailing lists: create, find, and the rules for slugs and allowed origins."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.db import Database
from service.errors import Refusal
from service.i18n import LANGUAGES
from service.models import MailingList
from service.widget_settings import BOX_SETTINGS, check_changes, parse_flag

__all__ = [
    "SLUG_PATTERN",
    "ListCache",
    "ListErrors",
    "ListExists",
    "all_lists",
    "create_list",
    "get_list",
    "normalise_origin",
    "update_list",
    "validate_slug",
]

log = logging.getLogger(__name__)

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_SLUG = re.compile(SLUG_PATTERN)


class ListExists(Refusal):
    status = 409


class ListErrors(ValueError):
    """What is wrong with each field of a list's change, by field name."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))
        self.fields = fields


def validate_slug(slug: str) -> str:
    if not _SLUG.match(slug):
        raise ValueError(
            "a slug is 1-64 lowercase letters, digits and dashes, "
            "not starting or ending with a dash"
        )
    return slug


def normalise_origin(origin: str) -> str:
    """``https://Example.com/`` -> ``https://example.com``; a browser's Origin header form."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{origin!r} is not an origin such as https://www.example.com")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} must be scheme://host[:port] only, without a path")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{host}{port}"


async def create_list(
    db: Database,
    *,
    slug: str,
    name: str,
    origins: list[str],
    language: str = "en",
    double_opt_in: bool = True,
    consent_text: str = "",
) -> MailingList:
    validate_slug(slug)
    if not name.strip():
        raise ValueError("a list needs a name")
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    mailing_list = MailingList(
        slug=slug,
        name=name.strip(),
        language=language,
        allowed_origins=sorted({normalise_origin(o) for o in origins}),
        double_opt_in=double_opt_in,
        consent_text=consent_text.strip(),
        widget={},
    )
    try:
        async with db.write() as session:
            session.add(mailing_list)
    except IntegrityError:
        raise ListExists(f"a list with the slug {slug!r} already exists") from None
    return mailing_list


LIST_FIELDS = ("name", "origins", "language", "consent_text", "double_opt_in")


async def update_list(db: Database, slug: str, changes: dict[str, str]) -> MailingList:
    """Change list fields and box settings from ``KEY=VALUE`` text; ValueError names bad ones."""
    unknown = sorted(set(changes) - set(LIST_FIELDS) - set(BOX_SETTINGS))
    if unknown:
        raise ValueError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the settings are {', '.join(LIST_FIELDS)} (the list) and "
            f"{', '.join(BOX_SETTINGS)} (its box)"
        )
    widget_changes = {k: v for k, v in changes.items() if k not in LIST_FIELDS}
    clean_widget, problems = check_changes(widget_changes)
    clean = _check_list_fields(changes, problems)
    if problems:
        raise ListErrors(problems)  # every field checked first: nothing is half-saved
    async with db.write() as session:
        mailing_list = await session.scalar(select(MailingList).where(MailingList.slug == slug))
        if mailing_list is None:
            raise LookupError(f"there is no list {slug!r}")
        for key, value in clean.items():
            setattr(mailing_list, key, value)
        mailing_list.widget = {**(mailing_list.widget or {}), **clean_widget}
    return mailing_list


def _check_list_fields(changes: dict[str, str], problems: dict[str, str]) -> dict[str, Any]:
    """The list's own fields among ``changes``, checked (what is wrong goes in ``problems``)."""
    clean: dict[str, Any] = {}
    if "name" in changes:
        if changes["name"].strip():
            clean["name"] = changes["name"].strip()
        else:
            problems["name"] = "a list needs a name"
    if "origins" in changes:
        try:
            clean["allowed_origins"] = sorted(
                {normalise_origin(o) for o in changes["origins"].split(",") if o.strip()}
            )
        except ValueError as exc:
            problems["origins"] = str(exc)
    if "language" in changes:
        if changes["language"] in LANGUAGES:
            clean["language"] = changes["language"]
        else:
            problems["language"] = f"must be one of {', '.join(LANGUAGES)}"
    if "consent_text" in changes:
        clean["consent_text"] = changes["consent_text"].strip()
    if "double_opt_in" in changes:
        try:
            clean["double_opt_in"] = parse_flag(changes["double_opt_in"])
        except ValueError as exc:
            problems["double_opt_in"] = str(exc)
    return clean


async def get_list(db: Database, slug: str) -> MailingList | None:
    async with db.read() as session:
        return await session.scalar(select(MailingList).where(MailingList.slug == slug))


async def all_lists(db: Database) -> list[MailingList]:
    async with db.read() as session:
        return list((await session.scalars(select(MailingList).order_by(MailingList.slug))).all())


MISS_TTL = 0.25  # seconds an unknown slug is remembered


class ListCache:
    """Lists as the public endpoints read them, kept for a moment.

    Every signup, preflight and widget load needs its list; reading it from the database
    each time costs more than the rest of the request. An entry is fresh for ``ttl``
    seconds; for one ``ttl`` more it is still answered while a single read in the
    background renews it, so under load no request waits for the database (when every
    request that found an entry expired read it for itself, they all stalled together).
    A change made in another process (``newsletter lists set``, another app server)
    applies within about twice ``ttl``; changes made through this process's admin side
    clear the cache at once. An unknown slug is remembered for ``MISS_TTL`` at most and
    never answered stale, so a list created elsewhere answers within a fraction of a second.
    """

    MAX_ENTRIES = 10_000

    def __init__(
        self, db: Database, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, MailingList | None]] = {}
        self._reads: dict[str, asyncio.Task[MailingList | None]] = {}  # one per slug at most
        self._generation = 0  # changed by clear(): reads begun before it are not kept

    async def get(self, slug: str) -> MailingList | None:
        if self._ttl <= 0:
            return await get_list(self._db, slug)
        found = self._entries.get(slug)
        if found is not None:
            fresh_until, mailing_list = found
            now = self._clock()
            if now < fresh_until:
                return mailing_list
            if mailing_list is not None and now < fresh_until + self._ttl:
                self._read(slug)
                return mailing_list
        # Shielded: a request that goes away must not cancel a read others wait for.
        return await asyncio.shield(self._read(slug))

    def _read(self, slug: str) -> asyncio.Task[MailingList | None]:
        task = self._reads.get(slug)
        if task is None:
            task = asyncio.create_task(self._fetch(slug, self._generation), name="list-read")
            self._reads[slug] = task
            task.add_done_callback(partial(self._read_done, slug))
        return task

    async def _fetch(self, slug: str, generation: int) -> MailingList | None:
        mailing_list = await get_list(self._db, slug)
        if generation == self._generation:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()  # unknown slugs by the thousand: start over
            # A list just created elsewhere must not stay unknown: misses keep briefly.
            ttl = self._ttl if mailing_list is not None else min(self._ttl, MISS_TTL)
            self._entries[slug] = (self._clock() + ttl, mailing_list)
        return mailing_list

    def _read_done(self, slug: str, task: asyncio.Task[MailingList | None]) -> None:
        if self._reads.get(slug) is task:
            del self._reads[slug]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("could not read list %r: %s", slug, exc)

    def clear(self) -> None:
        self._entries.clear()
        self._reads.clear()
        self._generation += 1

    async def close(self) -> None:
        """Wait for reads under way (before the database goes away)."""
        await asyncio.gather(*self._reads.values(), return_exceptions=True)
