"""Bulk actions on everyone a subscriber search matches: unsubscribe, erase, add to a
list, move to a list.

An action is planned first (how many people, and what will happen to them, in words),
then run with the count the admin saw: if the search matches a different number by then,
nothing is done and the admin is told, so an erasure never reaches further than what was
confirmed. Each action follows the rules of its single-person form: unsubscribing and
erasing are made by ``service.subscriptions``; adding sends confirmation emails unless
consent evidence is recorded, never adds back someone who unsubscribed from that list
and leaves blocklisted addresses out (``service.editing``'s rules). Moving adds to the
target list and then unsubscribes from the searched list those now on the target.
Work is done 500 people to a transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from service import blocklist
from service.db import Database
from service.emails import Emails
from service.errors import Refusal
from service.models import MailingList, Subscriber, Subscription, SubscriptionStatus, utcnow
from service.people import SearchFilters, matching_ids
from service.settings import Rate
from service.subscriptions import add_by_admin, erase_many, unsubscribe_many_by_admin
from service.suppressions import AddressKeys

__all__ = ["ACTIONS", "Bulk", "Outcome", "Plan", "plan", "run"]

ACTIONS = ("unsubscribe", "erase", "add", "move")
CHUNK = 500
ACTIVE = (SubscriptionStatus.PENDING, SubscriptionStatus.CONFIRMED)


@dataclass(frozen=True)
class Bulk:
    action: str
    filters: SearchFilters
    target: str = ""  # the list to add or move to
    evidence: str = ""  # for add and move: where, when and how they consented


@dataclass(frozen=True)
class Plan:
    count: int
    text: str  # what will happen, in words, for the confirmation step
    button: str


@dataclass
class Outcome:
    count: int = 0  # people the search matched
    changed: int = 0  # unsubscribed, erased, or added
    left: int = 0  # not changed, and why in ``text``
    text: str = ""
    erased: list[str] | None = None  # whom an erasure erased, to say so once


def _people(n: int) -> str:
    return f"{n:,} {'person' if n == 1 else 'people'}"


async def _list(db: Database, slug: str, what: str) -> MailingList:
    async with db.read() as session:
        found = await session.scalar(select(MailingList).where(MailingList.slug == slug))
    if found is None:
        message = f"choose the list to {what}" if not slug else f"there is no list {slug!r}"
        sentence = message[0].upper() + message[1:] + "."
        raise Refusal(sentence, status=422, fields={"target": message})
    return found


async def _check(db: Database, bulk: Bulk) -> tuple[MailingList | None, MailingList | None]:
    """(the searched list, the target list) an action needs; a Refusal if one is missing."""
    if bulk.action not in ACTIONS:
        raise Refusal(
            f"action must be one of {', '.join(ACTIONS)}.",
            status=422,
            fields={"action": f"must be one of {', '.join(ACTIONS)}"},
        )
    if len(bulk.evidence) > 500:
        raise Refusal(
            "The consent evidence is at most 500 characters.",
            status=422,
            fields={"evidence": "must be at most 500 characters"},
        )
    source = await _list(db, bulk.filters.list_slug, "") if bulk.filters.list_slug else None
    if bulk.action == "move" and source is None:
        raise Refusal(
            "Search one list to move its people from it.",
            status=422,
            fields={"list": "a move needs the list to move from: filter by list"},
        )
    target = None
    if bulk.action in {"add", "move"}:
        target = await _list(db, bulk.target, bulk.action + " them to")
        if source is not None and target.id == source.id:
            raise Refusal(
                "The target is the list searched.",
                status=422,
                fields={"target": "must be another list than the one searched"},
            )
    return source, target


async def plan(db: Database, bulk: Bulk) -> Plan:
    """How many people the action reaches and what it will do to them; a Refusal if it
    cannot be done as asked."""
    source, target = await _check(db, bulk)
    count = len(await matching_ids(db, bulk.filters))
    who = _people(count)
    if bulk.action == "unsubscribe":
        where = f"from {source.name} ({source.slug})" if source else "from every list"
        return Plan(count, f"Unsubscribe {who} {where}.", f"Yes, unsubscribe {who}")
    if bulk.action == "erase":
        return Plan(
            count,
            f"Delete all data of {who}: addresses, names, subscriptions, consent records "
            "and queued mail, for good. Only a keyed hash of each address is kept, so that "
            "no import brings it back.",
            f"Yes, delete all data of {who}",
        )
    assert target is not None
    how = (
        f"confirmed at once, on your evidence: {bulk.evidence.strip()}"
        if bulk.evidence.strip()
        else "each is sent a confirmation email and is pending until they click"
    )
    if bulk.action == "add":
        text = f"Add {who} to {target.name} ({target.slug}): {how}."
    else:
        assert source is not None
        text = (
            f"Move {who} from {source.name} ({source.slug}) to {target.name} "
            f"({target.slug}): on {target.slug}, {how}; those on {target.slug} are then "
            f"unsubscribed from {source.slug}."
        )
    text += " People who unsubscribed from it earlier, and blocklisted addresses, are left out."
    verb = "add" if bulk.action == "add" else "move"
    return Plan(count, text, f"Yes, {verb} {who}")


async def run(
    db: Database,
    emails: Emails,
    addresses: AddressKeys,
    bulk: Bulk,
    *,
    expected: int,
    admin: str,
    cap: tuple[Rate, ...] = (),
) -> Outcome:
    """Carry out the action on everyone the search matches, if that is still ``expected``
    people (else a 409 Refusal, and nothing done)."""
    source, target = await _check(db, bulk)
    ids = await matching_ids(db, bulk.filters)
    if len(ids) != expected:
        raise Refusal(
            f"The search now matches {_people(len(ids))}, not {expected:,}: nothing was done. "
            "Look at the search again before going ahead.",
            status=409,
        )
    outcome = Outcome(count=len(ids))
    if bulk.action == "erase":
        outcome.erased = await erase_many(db, ids, admin, addresses)
        outcome.changed = len(outcome.erased)
        outcome.text = f"All data of {_people(outcome.changed)} was deleted."
        return outcome
    if bulk.action == "unsubscribe":
        outcome.changed = await _unsubscribe(db, ids, source, admin)
        outcome.left = len(ids) - outcome.changed
        outcome.text = f"{_people(outcome.changed)} unsubscribed" + (
            f"; {outcome.left:,} had nothing to unsubscribe from." if outcome.left else "."
        )
        return outcome
    assert target is not None
    confirmed = pending = already = barred = 0
    on_target: list[int] = []
    now = utcnow()
    for start in range(0, len(ids), CHUNK):
        async with db.write() as session:
            people = [
                (sid, email)
                for sid, email in await session.execute(
                    select(Subscriber.id, Subscriber.email).where(
                        Subscriber.id.in_(ids[start : start + CHUNK])
                    )
                )
            ]
            blocked = await blocklist.blocked(session, [email for _, email in people])
            barred += sum(1 for _, email in people if email in blocked)
            allowed = [(sid, email) for sid, email in people if email not in blocked]
            added, existing = await add_by_admin(
                session,
                target,
                allowed,
                evidence=bulk.evidence,
                admin=admin,
                emails=emails,
                now=now,
                cap=cap,
            )
            confirmed += sum(1 for s in added.values() if s == SubscriptionStatus.CONFIRMED)
            pending += sum(1 for s in added.values() if s == SubscriptionStatus.PENDING)
            already += len(existing)
            on_target += list(added) + [sid for sid, s in existing.items() if s in ACTIVE]
    outcome.changed = confirmed + pending
    outcome.left = len(ids) - outcome.changed
    parts = [f"{_people(outcome.changed)} added to {target.slug}"]
    if confirmed and pending:
        parts[0] += f" ({confirmed:,} confirmed, {pending:,} sent a confirmation email)"
    elif pending:
        parts[0] += " (each sent a confirmation email)"
    if already:
        parts.append(f"{already:,} were on {target.slug} already (left as they were)")
    if barred:
        parts.append(f"{barred:,} blocklisted (left out)")
    if bulk.action == "move":
        assert source is not None
        moved = await _unsubscribe(db, on_target, source, admin)
        parts.append(f"{moved:,} unsubscribed from {source.slug}")
    outcome.text = "; ".join(parts) + "."
    return outcome


async def _unsubscribe(
    db: Database, subscriber_ids: list[int], source: MailingList | None, admin: str
) -> int:
    """Unsubscribe these people from ``source`` (every list if None); how many changed."""
    people: set[int] = set()
    for start in range(0, len(subscriber_ids), CHUNK):
        async with db.write() as session:
            query = select(Subscription.id, Subscription.subscriber_id).where(
                Subscription.subscriber_id.in_(subscriber_ids[start : start + CHUNK]),
                Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
            )
            if source is not None:
                query = query.where(Subscription.list_id == source.id)
            found = {sub_id: sid for sub_id, sid in await session.execute(query)}
            changed = await unsubscribe_many_by_admin(session, list(found), admin, utcnow())
            people.update(found[sub_id] for sub_id in changed)
    return len(people)
