"""Exports of a list, or of every subscription, in one of the formats, streamed.

Rows come from a server-side cursor (``AsyncConnection.stream``) in batches, and each
batch is written out before the next is fetched, so memory stays flat however large the
list. Times are formatted by the database, so the rows need no Python-side conversion.

One row per subscription, selected as ``formats.COLUMNS`` and written by the format's
writer (``service.transfer.formats``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Select,
    Text,
    case,
    cast,
    func,
    select,
)
from sqlalchemy.orm import aliased

from service.db import Database, utc_text
from service.models import ConsentAction, ConsentRecord, MailingList, Subscriber, Subscription
from service.people import shown_status
from service.transfer.formats import FORMATS, STATUSES, WRITERS, Row

__all__ = [
    "ExportQuery",
    "check_format",
    "count_rows",
    "export_chunks",
    "export_filename",
    "export_sql",
]

BATCH = 2000
BOM = "\ufeff"


@dataclass(frozen=True)
class ExportQuery:
    """Which subscriptions: one list or all, some statuses, subscribed in [since, until)."""

    list_slug: str | None = None
    statuses: frozenset[str] = field(default_factory=lambda: frozenset({"confirmed"}))
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        unknown = set(self.statuses) - set(STATUSES)
        if unknown or not self.statuses:
            raise ValueError(
                f"status must be one or more of {', '.join(STATUSES)}"
                + (f", not {', '.join(sorted(unknown))}" if unknown else "")
            )


def check_format(query: ExportQuery, fmt: str) -> None:
    """A ValueError saying why ``query`` cannot be written as ``fmt``.

    Mailchimp's import takes the status of a whole file from the person importing it, so a
    Mailchimp-layout file of several statuses would make everyone in it one status.
    listmonk's too (its import runs either subscribe or blocklist), and it takes the list
    from the person importing as well: its layout has no list column, so a listmonk export
    is of one list, as well as of one status.
    """
    if fmt not in WRITERS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if fmt == "mailchimp" and len(query.statuses) > 1:
        raise ValueError(
            "Mailchimp imports one status per file: export one status at a time for it "
            f"(one of {', '.join(STATUSES)}), not {', '.join(sorted(query.statuses))} together"
        )
    if fmt == "listmonk":
        if len(query.statuses) > 1:
            raise ValueError(
                "listmonk imports one status per file (subscribe or blocklist): export one "
                f"status at a time for it (one of {', '.join(STATUSES)}), not "
                f"{', '.join(sorted(query.statuses))} together"
            )
        if query.list_slug is None:
            raise ValueError(
                "listmonk's layout has no list column (its import asks for the list): "
                "export one list at a time for it"
            )


# Query -----------------------------------------------------------------------------------


def _latest(action: ConsentAction) -> Any:
    """The subscription's latest consent record of ``action`` (a join, None if there is none).

    The person's own records (a form, a link, or carried over from an imported file) come
    before the note an import writes of itself ("Imported as confirmed by ..."), which is
    exported only where there is no other: so an export imported back exports the same
    evidence.

    A correlated subquery in the join's ON clause picks one record's id, so the evidence
    columns cost one index lookup per kind, the same SQL on SQLite and PostgreSQL.
    """
    record = aliased(ConsentRecord, name=f"{action.value}_record")
    latest = (
        select(ConsentRecord.id)
        .where(
            ConsentRecord.subscription_id == Subscription.id,
            ConsentRecord.action == action,
        )
        .order_by(
            # The person's own record first; an import's note of its own only if none.
            case((ConsentRecord.method == "import", 0), else_=1).desc(),
            ConsentRecord.created_at.desc(),
            ConsentRecord.id.desc(),
        )
        .limit(1)
        .correlate(Subscription)
        .scalar_subquery()
    )
    return record, record.id == latest


def export_sql(query: ExportQuery) -> Select[Any]:
    """The export's SELECT; its columns are ``formats.COLUMNS``, all text, in that order.

    The consent evidence is the latest signup record's and the latest confirmation
    record's (IP address, user agent, wording shown), one row per subscription still.
    """
    status = shown_status()
    consent_source = (
        select(func.coalesce(ConsentRecord.page_url, ConsentRecord.method))
        .where(ConsentRecord.subscription_id == Subscription.id)
        .order_by(ConsentRecord.id)
        .limit(1)
        .scalar_subquery()
    )
    signup, signup_on = _latest(ConsentAction.SUBSCRIBE)
    confirm, confirm_on = _latest(ConsentAction.CONFIRM)
    sql = (
        select(
            Subscriber.email,
            Subscriber.name,
            MailingList.slug,
            status,
            utc_text(Subscription.subscribed_at),
            utc_text(Subscription.confirmed_at),
            utc_text(Subscription.unsubscribed_at),
            consent_source,
            cast(Subscriber.attributes, Text),
            signup.ip_address,
            signup.user_agent,
            signup.wording,
            confirm.ip_address,
            confirm.user_agent,
            confirm.wording,
        )
        .select_from(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .outerjoin(signup, signup_on)
        .outerjoin(confirm, confirm_on)
        .order_by(Subscription.subscriber_id, Subscription.list_id)
    )
    if query.list_slug is not None:
        sql = sql.where(MailingList.slug == query.list_slug)
    if set(query.statuses) != set(STATUSES):
        sql = sql.where(status.in_(sorted(query.statuses)))
    if query.since is not None:
        sql = sql.where(Subscription.subscribed_at >= query.since)
    if query.until is not None:
        sql = sql.where(Subscription.subscribed_at < query.until)
    return sql


async def count_rows(db: Database, query: ExportQuery) -> int:
    sql = export_sql(query).order_by(None).subquery()
    async with db.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(sql)) or 0)


async def _batches(db: Database, query: ExportQuery, size: int) -> AsyncIterator[list[Row]]:
    sql = export_sql(query)
    async with db.engine.connect() as conn:
        result = await conn.stream(sql.execution_options(yield_per=size))
        try:
            async for batch in result.partitions(size):
                yield batch
        finally:
            await result.close()


def export_filename(query: ExportQuery, fmt: str, today: date) -> str:
    what = query.list_slug or "all-lists"
    kind = "" if fmt in {"csv", "ndjson"} else f"-{fmt}"
    extension = "ndjson" if fmt == "ndjson" else "csv"
    return f"{what}{kind}-{today.isoformat()}.{extension}"


async def export_chunks(
    db: Database,
    query: ExportQuery,
    fmt: str,
    *,
    bom: bool = False,
    batch: int = BATCH,
    on_rows: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """The export as encoded chunks, one per batch of rows (the header comes first)."""
    check_format(query, fmt)
    header, write = WRITERS[fmt]()
    if bom and fmt != "ndjson":
        header = BOM + header
    if header:
        yield header.encode()
    async for rows in _batches(db, query, batch):
        yield write(rows).encode()
        if on_rows is not None:
            on_rows(len(rows))
