"""The audit log: who did what on the admin side, when, and from where.

An entry is written in the same transaction as the action it records, so the log never
claims what did not happen and never misses what did. Actions written in this package's
own admin functions add their row to their transaction directly; actions that live in
other modules (lists, the subscription state machine) run inside ``along_with``, which
adds the row to the first transaction committed in that block that wrote something. An
action that writes nothing (refused, or nothing to change) leaves no entry. Reads (exports) and
actions made of many transactions (imports) get an entry of their own.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState, Session

from service.db import Database
from service.models import AuditEvent, utcnow
from service.transfer.formats import neutralise

__all__ = [
    "ACTIONS",
    "Actor",
    "AuditPage",
    "along_with",
    "csv_chunks",
    "entry",
    "event_json",
    "list_events",
    "record",
]

# Every action the log knows, for the filter; keep docs/admin.md in step.
ACTIONS = (
    "signin",
    "signin.failed",
    "signout",
    "export",
    "subscriber.data",
    "import",
    "subscriber.unsubscribe",
    "subscriber.erase",
    "subscriber.add",
    "subscriber.edit",
    "bulk.unsubscribe",
    "bulk.erase",
    "bulk.add",
    "bulk.move",
    "blocklist.add",
    "blocklist.remove",
    "list.create",
    "list.update",
    "token.create",
    "token.revoke",
    "admin.create",
    "admin.role",
    "admin.disable",
    "admin.enable",
    "admin.password",
    "session.revoke",
)
PAGE_SIZE = 50
CSV_BATCH = 500


@dataclass(frozen=True)
class Actor:
    """Who acts: an admin's name (or what was typed, for a failed sign-in), how they
    proved it (session, token, cli, or "-"), and the client's address."""

    name: str
    via: str
    client: str | None = None


CLI = Actor("(command line)", "cli", "local")


def entry(actor: Actor, action: str, target: str = "", **detail: Any) -> AuditEvent:
    """A row for ``action`` done now by ``actor``; add it to the action's transaction."""
    return AuditEvent(
        created_at=utcnow(),
        actor=actor.name[:100],
        via=actor.via[:16],
        client=(actor.client or None) and actor.client[:64],
        action=action,
        target=target[:200],
        detail=detail,
    )


async def record(db: Database, row: AuditEvent) -> None:
    """Write ``row`` in a transaction of its own (for actions that have none)."""
    async with db.write() as session:
        session.add(row)


_riding: ContextVar[list[AuditEvent] | None] = ContextVar("audit_riding", default=None)


@contextmanager
def along_with(row: AuditEvent) -> Iterator[None]:
    """The first write transaction committed in this block (in this task) adds ``row``."""
    waiting = [row]
    token = _riding.set(waiting)
    try:
        yield
    finally:
        _riding.reset(token)


@event.listens_for(Session, "do_orm_execute")
def _note_write(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info["audit_wrote"] = True


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, context: object) -> None:
    session.info["audit_wrote"] = True


@event.listens_for(Session, "before_commit")
def _add_riding(session: Session) -> None:
    """A transaction that wrote something takes the waiting row; an empty one (the action
    found nothing to do) does not."""
    waiting = _riding.get()
    wrote = (
        session.info.pop("audit_wrote", False) or session.new or session.dirty or session.deleted
    )
    if waiting and wrote:
        session.add(waiting.pop())


@dataclass(frozen=True)
class AuditPage:
    events: Sequence[AuditEvent]
    next_before: int | None  # the cursor of the next (older) page, if any


def _query(action: str | None, before: int | None) -> Any:
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action == action)
    if before:
        query = query.where(AuditEvent.id < before)
    return query


async def list_events(
    db: Database, *, action: str | None = None, before: int | None = None, limit: int = PAGE_SIZE
) -> AuditPage:
    """Newest first, ``limit`` at a time; ``before`` is the id the page starts below."""
    async with db.read() as session:
        rows = list((await session.scalars(_query(action, before).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, rows[-1].id if more and rows else None)


def event_json(row: AuditEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": row.created_at.isoformat(),
        "actor": row.actor,
        "via": row.via,
        "client": row.client,
        "action": row.action,
        "target": row.target,
        "detail": row.detail,
    }


CSV_COLUMNS = ("id", "time", "actor", "via", "client", "action", "target", "detail")


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


async def csv_chunks(db: Database, *, action: str | None = None) -> AsyncIterator[bytes]:
    """The whole log (or one action's entries), newest first, as CSV for a spreadsheet:
    cells that a spreadsheet would run as a formula are neutralised."""
    yield ("\ufeff" + _csv_text([CSV_COLUMNS])).encode()
    before: int | None = None
    while True:
        page = await list_events(db, action=action, before=before, limit=CSV_BATCH)
        lines = []
        for row in page.events:
            data = event_json(row)
            data["detail"] = json.dumps(row.detail, ensure_ascii=False, sort_keys=True)
            lines.append(
                [neutralise(str(data[c] if data[c] is not None else "")) for c in CSV_COLUMNS]
            )
        yield _csv_text(lines).encode()
        if page.next_before is None:
            return
        before = page.next_before
