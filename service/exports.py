"""Exports of a list, or of every subscription, as CSV or NDJSON, streamed.

Rows come from a server-side cursor (``AsyncConnection.stream``) in batches, and each
batch is written out before the next is fetched, so memory stays flat however large the
list. Times are formatted by the database, so the rows need no Python-side conversion.

One row per subscription: ``email, name, list, status, subscribed_at, confirmed_at,
unsubscribed_at, consent_source, attributes``. ``status`` is ``pending``, ``confirmed``,
``unsubscribed``, or ``failed`` when the latest email to that subscription could not be
delivered. ``consent_source`` is the page the person signed up on, or how they came
(``form``, ``import``, ``admin``).

CSV follows RFC 4180 (header row, CRLF, quotes doubled, fields with commas, quotes or line
breaks quoted) and is safe to open in a spreadsheet: a cell starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return would be run as a formula, so it gets a leading
``'`` (as does a cell made of ``'`` followed by one of those, so that the import can undo
exactly what the export did). The email column too: ``=1+2@example.com`` is a valid
address. NDJSON is left as it is; it is not opened by spreadsheets.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Text,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
)

from service.db import Database
from service.models import ConsentRecord, MailingList, OutboxMessage, Subscriber, Subscription

__all__ = [
    "COLUMNS",
    "FORMATS",
    "STATUSES",
    "ExportQuery",
    "count_rows",
    "export_chunks",
    "export_filename",
    "export_sql",
    "media_type",
    "neutralise",
    "unneutralise",
]

COLUMNS = (
    "email",
    "name",
    "list",
    "status",
    "subscribed_at",
    "confirmed_at",
    "unsubscribed_at",
    "consent_source",
    "attributes",
)
STATUSES = ("pending", "confirmed", "unsubscribed", "failed")
FORMATS = ("csv", "ndjson", "mailchimp", "listmonk")
BATCH = 2000
BOM = "\ufeff"

Row = Sequence[Any]


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


# Query -----------------------------------------------------------------------------------


def _when(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%dT%H:%M:%SZ", column)
    return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')


def export_sql(query: ExportQuery, dialect: str) -> Select[Any]:
    """The export's SELECT; its columns are ``COLUMNS``, all text, in that order."""
    latest_mail = (
        select(OutboxMessage.status)
        .where(OutboxMessage.subscription_id == Subscription.id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    raw_status = type_coerce(Subscription.status, String)
    status = case(
        (raw_status == "unsubscribed", literal("unsubscribed")),
        (type_coerce(latest_mail, String) == "failed", literal("failed")),
        else_=raw_status,
    )
    consent_source = (
        select(func.coalesce(ConsentRecord.page_url, ConsentRecord.method))
        .where(ConsentRecord.subscription_id == Subscription.id)
        .order_by(ConsentRecord.id)
        .limit(1)
        .scalar_subquery()
    )
    sql = (
        select(
            Subscriber.email,
            Subscriber.name,
            MailingList.slug,
            status,
            _when(Subscription.subscribed_at, dialect),
            _when(Subscription.confirmed_at, dialect),
            _when(Subscription.unsubscribed_at, dialect),
            consent_source,
            cast(Subscriber.attributes, Text),
        )
        .select_from(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .join(MailingList, MailingList.id == Subscription.list_id)
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
    sql = export_sql(query, db.engine.dialect.name).order_by(None).subquery()
    async with db.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(sql)) or 0)


async def _batches(db: Database, query: ExportQuery, size: int) -> AsyncIterator[list[Row]]:
    sql = export_sql(query, db.engine.dialect.name)
    async with db.engine.connect() as conn:
        result = await conn.stream(sql.execution_options(yield_per=size))
        try:
            async for batch in result.partitions(size):
                yield batch
        finally:
            await result.close()


# Cells -----------------------------------------------------------------------------------

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_RISKY = frozenset({*_TRIGGERS, "'"})  # a first character that may need a look


def neutralise(value: str) -> str:
    """A cell a spreadsheet will show as text: ``'`` before anything it would evaluate."""
    if value.lstrip("'")[:1] in _TRIGGERS:  # "'=x" too, so that the import can undo it
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """Undo ``neutralise`` (an import reading a CSV file this service wrote)."""
    if value[:1] == "'" and value.lstrip("'")[:1] in _TRIGGERS:
        return value[1:]
    return value


def _cell(value: str | None) -> str:
    if not value:
        return ""
    first = value[0]
    if first in _TRIGGERS or first == "'":
        return neutralise(value)
    return value


def _attributes(raw: str | None) -> dict[str, Any]:
    if not raw or raw in ("{}", "null"):
        return {}
    loaded = json.loads(raw)
    return loaded if isinstance(loaded, dict) else {}


def _attributes_text(raw: str | None) -> str:
    if not raw or raw == "{}" or raw == "null":
        return ""
    return json.dumps(_attributes(raw), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _split_name(name: str | None) -> tuple[str, str]:
    first, _, last = (name or "").rpartition(" ")
    return (first, last) if first else (last, "")


def _mailchimp_time(value: str | None) -> str:
    return value.replace("T", " ").rstrip("Z") if value else ""


# Writers ---------------------------------------------------------------------------------

Writer = Callable[[Iterable[Row]], str]


class _Csv:
    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")

    def take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def _ours_csv() -> tuple[str, Writer]:
    out = _Csv()
    out.writer.writerow(COLUMNS)
    header = out.take()
    risky = _RISKY

    def write(rows: Iterable[Row]) -> str:
        cells = []
        # The hot loop of a large export: checks inlined, most cells pass untouched.
        for e, n, s, st, a, b, c, src, attrs in rows:
            if e[:1] in risky:
                e = neutralise(e)
            if n and n[0] in risky:
                n = neutralise(n)
            if src and src[0] in risky:
                src = neutralise(src)
            cells.append((e, n, s, st, a, b, c, src, _attributes_text(attrs) if attrs else ""))
        out.writer.writerows(cells)
        return out.take()

    return header, write


MAILCHIMP_COLUMNS = (
    "Email Address",
    "First Name",
    "Last Name",
    "TAGS",
    "OPTIN_TIME",
    "CONFIRM_TIME",
    "UNSUB_TIME",
)


def _mailchimp_csv() -> tuple[str, Writer]:
    out = _Csv()
    out.writer.writerow(MAILCHIMP_COLUMNS)
    header = out.take()

    def write(rows: Iterable[Row]) -> str:
        for e, n, slug, _st, a, b, c, _src, _attrs in rows:
            first, last = _split_name(n)
            out.writer.writerow(
                (
                    _cell(e),
                    _cell(first),
                    _cell(last),
                    slug,
                    _mailchimp_time(a),
                    _mailchimp_time(b),
                    _mailchimp_time(c),
                )
            )
        return out.take()

    return header, write


LISTMONK_COLUMNS = ("email", "name", "attributes")


def _listmonk_csv() -> tuple[str, Writer]:
    out = _Csv()
    out.writer.writerow(LISTMONK_COLUMNS)
    header = out.take()

    def write(rows: Iterable[Row]) -> str:
        out.writer.writerows(
            (_cell(e), _cell(n), _attributes_text(attrs) or "{}")
            for e, n, _s, _st, _a, _b, _c, _src, attrs in rows
        )
        return out.take()

    return header, write


def _ndjson() -> tuple[str, Writer]:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def write(rows: Iterable[Row]) -> str:
        return "".join(
            dumps(
                {
                    "email": e,
                    "name": n,
                    "list": s,
                    "status": st,
                    "subscribed_at": a,
                    "confirmed_at": b,
                    "unsubscribed_at": c,
                    "consent_source": src,
                    "attributes": _attributes(attrs),
                }
            )
            + "\n"
            for e, n, s, st, a, b, c, src, attrs in rows
        )

    return "", write


_WRITERS: dict[str, Callable[[], tuple[str, Writer]]] = {
    "csv": _ours_csv,
    "ndjson": _ndjson,
    "mailchimp": _mailchimp_csv,
    "listmonk": _listmonk_csv,
}


def media_type(fmt: str) -> str:
    return "application/x-ndjson" if fmt == "ndjson" else "text/csv; charset=utf-8"


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
    if fmt not in _WRITERS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    header, write = _WRITERS[fmt]()
    if bom and fmt != "ndjson":
        header = BOM + header
    if header:
        yield header.encode()
    async for rows in _batches(db, query, batch):
        yield write(rows).encode()
        if on_rows is not None:
            on_rows(len(rows))
