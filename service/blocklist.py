"""The admin's blocklist: addresses and domains no signup, import or admin adds.

An entry is an address or a domain. An address is kept in its canonical form
(``service.limits.canonical_address``: case, ``+tags`` and Gmail's dots do not count),
so ``Name+news@gmail.com`` is blocked by ``name@gmail.com``; a domain blocks its
subdomains too (``example.com`` blocks ``news.example.com``).

Where it is honoured:

- **Signups** (the box, the hosted page, the API): answered exactly like any other signup
  (202, "check your inbox"), so the answer never tells anyone that an address or a
  domain is blocked; the worker then drops the signup without sending anything. This is
  the one deliberate exception to "whoever is told to check their inbox gets the email":
  the admin has decided that this address or domain must not be written to.
- **Imports**: blocked rows are not imported, counted (``blocklisted``) and named with
  their line in the report.
- **Adding by hand**: refused with a message that says so (the admin may know).

Blocking does not change anyone already on a list: unsubscribe them (one by one, or with
a bulk action on a search) if that is wanted too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Database
from service.limits import canonical_address
from service.models import BlockedEntry

__all__ = ["Entry", "add", "blocked", "entries", "parse", "remove"]

MAX_NOTE = 200


@dataclass(frozen=True)
class Entry:
    id: int
    value: str
    kind: str  # "address" or "domain"
    note: str
    created_by: str
    created_at: datetime


def parse(text: str) -> tuple[str, str]:
    """``(kind, value)`` for one entry as an admin types it; ValueError saying what is wrong.

    ``someone@example.com`` is an address; ``example.com``, ``@example.com`` and
    ``*.example.com`` are the domain ``example.com`` (its subdomains included).
    """
    raw = text.strip()
    if not raw:
        raise ValueError("an entry is an address (name@example.com) or a domain (example.com)")
    if "@" in raw.lstrip("@"):
        try:
            checked = validate_email(raw, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(f"{raw!r} is not an address: {exc}") from None
        return "address", canonical_address(checked.normalized)
    domain = raw.lstrip("@").removeprefix("*.").rstrip(".")
    try:
        checked = validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError:
        raise ValueError(
            f"{raw!r} is neither an address (name@example.com) nor a domain (example.com)"
        ) from None
    return "domain", checked.domain.lower()


def _candidates(email: str) -> set[str]:
    """The entries that would block ``email``: its canonical form, its domain and every
    domain above it."""
    domain = email.rpartition("@")[2].lower()
    labels = domain.split(".")
    return {canonical_address(email)} | {".".join(labels[i:]) for i in range(len(labels))}


async def blocked(session: AsyncSession, emails: Iterable[str]) -> set[str]:
    """Which of ``emails`` the blocklist blocks: the one check every door makes."""
    wanted: dict[str, set[str]] = {}
    for email in emails:
        for candidate in _candidates(email):
            wanted.setdefault(candidate, set()).add(email)
    found: set[str] = set()
    keys = list(wanted)
    for start in range(0, len(keys), 500):
        rows = await session.scalars(
            select(BlockedEntry.value).where(BlockedEntry.value.in_(keys[start : start + 500]))
        )
        for value in rows:
            found |= wanted[value]
    return found


async def add(db: Database, texts: Iterable[str], *, admin: str, note: str = "") -> list[Entry]:
    """Add entries (ValueError naming the first bad one, and none added); those that were
    new. An entry already there is left as it is (adding it again is harmless)."""
    parsed = [parse(text) for text in texts if text.strip()]
    if not parsed:
        raise ValueError("an entry is an address (name@example.com) or a domain (example.com)")
    note = "".join(ch for ch in " ".join(note.split()) if ch.isprintable())[:MAX_NOTE]
    added: list[Entry] = []
    async with db.write() as session:
        present = set(
            await session.scalars(
                select(BlockedEntry.value).where(BlockedEntry.value.in_([v for _, v in parsed]))
            )
        )
        for value, kind in dict((v, k) for k, v in parsed).items():
            if value in present:
                continue
            row = BlockedEntry(value=value, kind=kind, note=note, created_by=admin[:64])
            try:
                async with session.begin_nested():
                    session.add(row)
            except IntegrityError:  # added at this moment by someone else: there it is
                continue
            added.append(_entry(row))
    return added


async def remove(db: Database, entry_id: int) -> Entry | None:
    """Remove one entry; None if there is no such entry (removing twice is harmless)."""
    async with db.write() as session:
        row = await session.get(BlockedEntry, entry_id)
        if row is None:
            return None
        entry = _entry(row)
        await session.execute(delete(BlockedEntry).where(BlockedEntry.id == entry_id))
    return entry


async def entries(db: Database, query: str = "") -> list[Entry]:
    """Every entry, newest first; those containing ``query`` if one is given."""
    statement = select(BlockedEntry).order_by(BlockedEntry.id.desc())
    if query.strip():
        needle = query.strip().lower()
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(BlockedEntry.value.like(f"%{escaped}%", escape="\\"))
    async with db.read() as session:
        return [_entry(row) for row in (await session.scalars(statement)).all()]


def _entry(row: BlockedEntry) -> Entry:
    return Entry(row.id, row.value, row.kind, row.note, row.created_by, row.created_at)
