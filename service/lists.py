"""Mailing lists: create, find, and the rules for slugs and allowed origins."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.db import Database
from service.i18n import LANGUAGES
from service.models import MailingList
from service.widget_settings import parse_flag, validate_changes

__all__ = [
    "ListCache",
    "ListExists",
    "all_lists",
    "create_list",
    "get_list",
    "normalise_origin",
    "update_list",
    "validate_slug",
]

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class ListExists(Exception):
    pass


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
    widget_changes = {k: v for k, v in changes.items() if k not in LIST_FIELDS}
    clean_widget = validate_changes(widget_changes)
    async with db.write() as session:
        mailing_list = await session.scalar(select(MailingList).where(MailingList.slug == slug))
        if mailing_list is None:
            raise LookupError(f"there is no list {slug!r}")
        if "name" in changes:
            if not changes["name"].strip():
                raise ValueError("name: a list needs a name")
            mailing_list.name = changes["name"].strip()
        if "origins" in changes:
            mailing_list.allowed_origins = sorted(
                {normalise_origin(o) for o in changes["origins"].split(",") if o.strip()}
            )
        if "language" in changes:
            if changes["language"] not in LANGUAGES:
                raise ValueError(f"language: must be one of {', '.join(LANGUAGES)}")
            mailing_list.language = changes["language"]
        if "consent_text" in changes:
            mailing_list.consent_text = changes["consent_text"].strip()
        if "double_opt_in" in changes:
            try:
                mailing_list.double_opt_in = parse_flag(changes["double_opt_in"])
            except ValueError as exc:
                raise ValueError(f"double_opt_in: {exc}") from None
        mailing_list.widget = {**(mailing_list.widget or {}), **clean_widget}
    return mailing_list


async def get_list(db: Database, slug: str) -> MailingList | None:
    async with db.read() as session:
        return await session.scalar(select(MailingList).where(MailingList.slug == slug))


async def all_lists(db: Database) -> list[MailingList]:
    async with db.read() as session:
        return list((await session.scalars(select(MailingList).order_by(MailingList.slug))).all())


class ListCache:
    """Lists as the public endpoints read them, kept for a moment.

    Every signup, preflight and widget load needs its list; reading it from the database
    each time costs more than the rest of the request. An entry lives ``ttl`` seconds, so a
    change made in another process (``newsletter lists set``, another app server) applies
    within that time; changes made through this process's admin side clear it at once.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, db: Database, ttl: float = 2.0) -> None:
        self._db = db
        self._ttl = ttl
        self._entries: dict[str, tuple[float, MailingList | None]] = {}

    async def get(self, slug: str) -> MailingList | None:
        now = time.monotonic()
        found = self._entries.get(slug)
        if found is not None and found[0] > now:
            return found[1]
        mailing_list = await get_list(self._db, slug)
        if self._ttl <= 0:
            return mailing_list
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()  # unknown slugs by the thousand: start over
        self._entries[slug] = (now + self._ttl, mailing_list)
        return mailing_list

    def clear(self) -> None:
        self._entries.clear()
