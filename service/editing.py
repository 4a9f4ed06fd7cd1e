"""People edited by hand: a person's name, attributes and lists, and a person added.

The rules, whoever asks (the admin pages or the admin API):

- A name is checked like a signup's; attributes are a flat JSON object (text, numbers,
  true/false or null values), small enough to show.
- Adding someone to a list sends them a confirmation email (double opt-in), unless the
  admin records the evidence of their consent (where, when and how they agreed), which
  then confirms them at once and is kept in their consent record.
- An opt-out wins: a list the person left is not subscribed again by an admin; only they
  can do that. Taking someone off a list unsubscribes them (recorded as the admin's).
- An erased address stays suppressed and a blocklisted one stays out: neither is added.

Status changes are made by ``service.subscriptions``; this module says what is asked.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service import blocklist
from service.db import Database, insert_or_ignore
from service.emails import Emails
from service.errors import Refusal
from service.models import MailingList, Subscriber, Subscription, SubscriptionStatus, utcnow
from service.settings import Rate
from service.subscriptions import add_by_admin, unsubscribe_many_by_admin
from service.suppressions import AddressKeys, suppressed
from service.validation import FIX_FIELDS, MAX_NAME, validate_signup

__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_EVIDENCE",
    "Edit",
    "EditResult",
    "add_person",
    "edit_person",
    "parse_attributes",
]

MAX_ATTRIBUTES = 50
MAX_KEY = 64
MAX_VALUE = 500
MAX_EVIDENCE = 500
ACTIVE = (SubscriptionStatus.PENDING, SubscriptionStatus.CONFIRMED)


def _controls(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def parse_attributes(value: Any) -> dict[str, Any]:
    """Attributes as a flat JSON object (or its text); ValueError saying what is wrong."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(
                'must be a JSON object, such as {"city": "Köln", "plan": "pro"}'
            ) from None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object, such as {"city": "Köln", "plan": "pro"}')
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
    for key, item in value.items():
        if not key.strip() or len(key) > MAX_KEY or _controls(key):
            raise ValueError(
                f"a name is 1 to {MAX_KEY} characters, no control characters ({key!r} is not)"
            )
        if isinstance(item, str) and "\x00" in item:
            raise ValueError(f"{key}: must not contain NUL characters")
        if isinstance(item, (dict, list)):
            raise ValueError(f"{key}: must be text, a number, true/false or null")
        if isinstance(item, str) and len(item) > MAX_VALUE:
            raise ValueError(f"{key}: at most {MAX_VALUE} characters")
    return dict(value)


@dataclass(frozen=True)
class Edit:
    """What an admin asks of one person. ``None``: leave that as it is."""

    name: str | None = None
    attributes: dict[str, Any] | None = None
    lists: frozenset[str] | None = None  # the lists they are to be on (pending or confirmed)
    evidence: str = ""  # for the lists added: where, when and how they consented


@dataclass
class EditResult:
    subscriber_id: int
    added: dict[str, str] = field(default_factory=dict)  # list slug -> pending or confirmed
    removed: list[str] = field(default_factory=list)  # list slugs unsubscribed from
    refused: dict[str, str] = field(default_factory=dict)  # list slug -> why not added

    def summary(self) -> str:
        parts = [
            f"added to {slug} ({'confirmed' if s == 'confirmed' else 'confirmation email sent'})"
            for slug, s in sorted(self.added.items())
        ]
        parts += [f"unsubscribed from {slug}" for slug in self.removed]
        parts += [f"not added to {slug}: {why}" for slug, why in sorted(self.refused.items())]
        return "Saved" + (": " + "; ".join(parts) if parts else "") + "."


def _checked(edit: Edit) -> Edit:
    """``edit`` with its name cleaned; a Refusal naming each bad field."""
    errors: dict[str, str] = {}
    name = edit.name
    if name is not None:
        try:
            name = validate_signup({"email": "x@example.com", "name": name}).name or ""
        except Refusal as exc:
            errors["name"] = exc.fields.get("name", f"at most {MAX_NAME} characters")
    if len(edit.evidence) > MAX_EVIDENCE:
        errors["evidence"] = f"must be at most {MAX_EVIDENCE} characters"
    elif _controls(edit.evidence.replace("\n", "").replace("\r", "").replace("\t", "")):
        errors["evidence"] = "must not contain control characters"
    if errors:
        raise Refusal(FIX_FIELDS, status=422, fields=errors)
    return Edit(name, edit.attributes, edit.lists, edit.evidence.strip())


async def _lists(db: Database, slugs: frozenset[str]) -> dict[str, MailingList]:
    async with db.read() as session:
        found = {
            ml.slug: ml
            for ml in (
                await session.scalars(select(MailingList).where(MailingList.slug.in_(slugs)))
            ).all()
        }
    unknown = sorted(slugs - set(found))
    if unknown:
        raise Refusal(
            f"There is no list {', '.join(map(repr, unknown))}.",
            status=422,
            fields={"lists": f"no such list: {', '.join(unknown)}"},
        )
    return found


async def _apply_lists(
    session: AsyncSession,
    person: Subscriber,
    wanted: dict[str, MailingList],
    evidence: str,
    result: EditResult,
    admin: str,
    emails: Emails,
    cap: tuple[Rate, ...],
) -> None:
    """Put ``person`` on the ``wanted`` lists and take them off the others, in ``session``."""
    now = utcnow()
    current = {
        slug: (sub_id, status)
        for sub_id, slug, status in await session.execute(
            select(Subscription.id, MailingList.slug, Subscription.status)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(Subscription.subscriber_id == person.id)
        )
    }
    leaving = sorted(s for s, (_, st) in current.items() if st in ACTIVE and s not in wanted)
    if leaving:
        await unsubscribe_many_by_admin(session, [current[s][0] for s in leaving], admin, now)
        result.removed = leaving
    joining = [slug for slug in sorted(wanted) if slug not in current]
    for slug in sorted(wanted):
        if slug in current and current[slug][1] == SubscriptionStatus.UNSUBSCRIBED:
            result.refused[slug] = "unsubscribed earlier; only they can subscribe again"
    if joining and await blocklist.blocked(session, [person.email]):
        result.refused.update(dict.fromkeys(joining, "the address is blocklisted"))
        joining = []
    for slug in joining:
        added, _ = await add_by_admin(
            session,
            wanted[slug],
            [(person.id, person.email)],
            evidence=evidence,
            admin=admin,
            emails=emails,
            now=now,
            cap=cap,
        )
        for status in added.values():
            result.added[slug] = str(status)


async def edit_person(
    db: Database,
    emails: Emails,
    subscriber_id: int,
    edit: Edit,
    *,
    admin: str,
    cap: tuple[Rate, ...] = (),
) -> EditResult | None:
    """Apply ``edit`` to one person in one transaction; None if there is no such person."""
    edit = _checked(edit)
    wanted = await _lists(db, edit.lists) if edit.lists is not None else {}
    result = EditResult(subscriber_id)
    async with db.write() as session:
        person = await session.get(Subscriber, subscriber_id, with_for_update=True)
        if person is None:
            return None
        values: dict[str, Any] = {}
        if edit.name is not None:
            values["name"] = edit.name or None
        if edit.attributes is not None:
            values["attributes"] = edit.attributes
        if values:
            await session.execute(
                update(Subscriber).where(Subscriber.id == subscriber_id).values(**values)
            )
        if edit.lists is not None:
            await _apply_lists(session, person, wanted, edit.evidence, result, admin, emails, cap)
    return result


async def add_person(
    db: Database,
    emails: Emails,
    addresses: AddressKeys,
    fields: Mapping[str, Any],
    slugs: Sequence[str],
    *,
    attributes: dict[str, Any],
    evidence: str,
    admin: str,
    cap: tuple[Rate, ...] = (),
) -> EditResult:
    """Add a new person by hand, onto ``slugs``; a Refusal that says why not (an invalid
    field, no list, someone already here, an erased or blocklisted address)."""
    signup = validate_signup({"email": fields.get("email"), "name": fields.get("name")})
    if not slugs:
        raise Refusal(FIX_FIELDS, status=422, fields={"lists": "choose at least one list"})
    edit = _checked(Edit(signup.name, attributes, frozenset(slugs), evidence))
    wanted = await _lists(db, frozenset(slugs))
    async with db.write() as session:
        if await suppressed(session, addresses, [signup.email]):
            raise Refusal(
                FIX_FIELDS,
                status=422,
                fields={"email": "was erased earlier and stays suppressed: it cannot be added"},
            )
        if await blocklist.blocked(session, [signup.email]):
            raise Refusal(
                FIX_FIELDS,
                status=422,
                fields={"email": "is blocklisted (the address or its domain): it cannot be added"},
            )
        created = await session.scalar(
            insert_or_ignore(session, Subscriber)
            .values(
                email=signup.email, name=signup.name, attributes=attributes, created_at=utcnow()
            )
            .returning(Subscriber.id)
        )
        if created is None:
            known = await session.scalar(
                select(Subscriber.id).where(Subscriber.email == signup.email)
            )
            raise Refusal(
                f"{signup.email} is here already: edit their record (/admin/subscribers/{known}).",
                status=409,
                fields={"email": "is here already"},
            )
        person = await session.get(Subscriber, created)
        assert person is not None
        result = EditResult(created)
        await _apply_lists(session, person, wanted, edit.evidence, result, admin, emails, cap)
    return result
