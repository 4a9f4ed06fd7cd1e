"""Import subscribers into a list from a CSV file: ours, Mailchimp's or listmonk's.

The format is recognised from the header row. Each row's address is checked like a
signup's; a bad row is reported with its line number and the rest go on. Rows are
written in batches, one transaction each.

Importing is idempotent: an address already on the list is left exactly as it is (an
unsubscribed one stays unsubscribed, and the report says so), an erased address stays
suppressed, and running the same import again changes nothing. New addresses are either

- **confirmed** now, on the admin's word: the consent record keeps who imported them,
  from which file, and the reason given (where and how these people consented); or
- sent a **double opt-in** email: the subscription is pending and the confirmation email
  is queued in the outbox in the same transaction, for the worker to send.

Rows marked unsubscribed in the file (our ``unsubscribed``, Mailchimp's unsubscribed
export, listmonk's ``blocklisted``) are recorded as unsubscribed, so a migration keeps
its opt-outs; rows whose delivery failed (our ``failed``, Mailchimp's cleaned export) are
not imported. Rows still pending in the file were never confirmed, so they get a
confirmation email even in a confirmed import.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Database
from service.emails import Emails
from service.exports import unneutralise
from service.models import (
    ConsentAction,
    ConsentRecord,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    utcnow,
)
from service.subscriptions import new_nonce
from service.suppressions import email_hash
from service.validation import FieldErrors, validate_signup

__all__ = ["ImportFileError", "ImportOptions", "ImportReport", "import_rows", "read_csv"]

BATCH = 500
MAX_NOTES = 1000


class ImportFileError(Exception):
    """The file as a whole cannot be imported (no header, not UTF-8)."""


@dataclass(frozen=True)
class ImportOptions:
    confirmed: bool  # False: double opt-in
    admin: str
    reason: str = ""
    source: str = "upload"  # the file's name, for the consent record

    def __post_init__(self) -> None:
        if self.confirmed and not self.reason.strip():
            raise ValueError(
                "Say where and how these people consented (the reason): it is kept as their "
                "consent record."
            )


@dataclass
class ImportReport:
    format: str = ""
    rows: int = 0
    confirmed: int = 0
    confirmation_sent: int = 0
    unsubscribed: int = 0
    unchanged: int = 0
    left_unsubscribed: int = 0
    suppressed: int = 0
    duplicates: int = 0
    failed_in_file: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.confirmed + self.confirmation_sent + self.unsubscribed

    more_errors: int = 0

    def note(self, line: int, message: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append((line, message))

    def error(self, line: int, message: str) -> None:
        if len(self.errors) < MAX_NOTES:
            self.errors.append((line, message))
        else:
            self.more_errors += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "rows": self.rows,
            "confirmed": self.confirmed,
            "confirmation_sent": self.confirmation_sent,
            "unsubscribed": self.unsubscribed,
            "unchanged": self.unchanged,
            "left_unsubscribed": self.left_unsubscribed,
            "suppressed": self.suppressed,
            "duplicates": self.duplicates,
            "failed_in_file": self.failed_in_file,
            "invalid": len(self.errors) + self.more_errors,
            "errors": [{"line": line, "message": m} for line, m in self.errors],
            "notes": [{"line": line, "message": m} for line, m in self.notes],
        }

    def summary(self) -> str:
        lines = [
            f"{self.rows} rows read ({self.format or 'unknown'} format)",
            f"{self.confirmed} subscribed as confirmed",
            f"{self.confirmation_sent} sent a confirmation email (pending until they click)",
            f"{self.unsubscribed} recorded as unsubscribed (as in the file)",
            f"{self.unchanged} already on the list, left unchanged",
        ]
        if self.left_unsubscribed:
            lines.append(
                f"{self.left_unsubscribed} unsubscribed from this list earlier: "
                "left unsubscribed, not subscribed again"
            )
        if self.suppressed:
            lines.append(f"{self.suppressed} erased earlier: stay suppressed, not imported")
        if self.failed_in_file:
            lines.append(f"{self.failed_in_file} marked undeliverable in the file: not imported")
        if self.duplicates:
            lines.append(f"{self.duplicates} repeated an earlier row: skipped")
        invalid = len(self.errors) + self.more_errors
        lines.append(f"{invalid} invalid rows" + (":" if invalid else ""))
        lines += [f"  line {line}: {message}" for line, message in self.errors]
        if self.more_errors:
            lines.append(f"  ... and {self.more_errors} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class ImportRow:
    line: int
    email: str
    name: str | None
    attributes: dict[str, Any]
    status: str  # confirmed, pending, unsubscribed, failed
    subscribed_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    consent_source: str | None = None


class RowError(Exception):
    pass


# Reading ---------------------------------------------------------------------------------


def _time(value: str, column: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RowError(f"{column}: {value!r} is not a date and time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _json_object(value: str, column: str) -> dict[str, Any]:
    if not value.strip():
        return {}
    try:
        loaded = json.loads(value)
    except ValueError:
        raise RowError(f"{column}: not valid JSON") from None
    if not isinstance(loaded, dict):
        raise RowError(f"{column}: must be a JSON object")
    return loaded


def _ours(cells: dict[str, str], line: int) -> dict[str, Any]:
    status = cells.get("status", "").strip() or "confirmed"
    if status not in {"pending", "confirmed", "unsubscribed", "failed"}:
        raise RowError(f"status: {status!r} is not pending, confirmed, unsubscribed or failed")
    return {
        "name": cells.get("name", ""),
        "attributes": _json_object(cells.get("attributes", ""), "attributes"),
        "status": status,
        "subscribed_at": _time(cells.get("subscribed_at", ""), "subscribed_at"),
        "confirmed_at": _time(cells.get("confirmed_at", ""), "confirmed_at"),
        "unsubscribed_at": _time(cells.get("unsubscribed_at", ""), "unsubscribed_at"),
        "consent_source": cells.get("consent_source", "").strip() or None,
    }


def _mailchimp(cells: dict[str, str], line: int) -> dict[str, Any]:
    name = " ".join(p for p in (cells.get("first name", ""), cells.get("last name", "")) if p)
    if cells.get("unsub_time", "").strip():
        status = "unsubscribed"
    elif "clean_time" in cells:
        status = "failed"
    else:
        status = "confirmed"
    return {
        "name": name,
        "attributes": {},
        "status": status,
        "subscribed_at": _time(cells.get("optin_time", ""), "OPTIN_TIME"),
        "confirmed_at": _time(cells.get("confirm_time", ""), "CONFIRM_TIME"),
        "unsubscribed_at": _time(cells.get("unsub_time", ""), "UNSUB_TIME"),
    }


def _listmonk(cells: dict[str, str], line: int) -> dict[str, Any]:
    blocked = cells.get("status", "").strip().lower() == "blocklisted"
    return {
        "name": cells.get("name", ""),
        "attributes": _json_object(cells.get("attributes", ""), "attributes"),
        "status": "unsubscribed" if blocked else "confirmed",
    }


def _plain(cells: dict[str, str], line: int) -> dict[str, Any]:
    return {"name": cells.get("name", ""), "attributes": {}, "status": "confirmed"}


def detect(header: list[str]) -> tuple[str, str, Callable[[dict[str, str], int], dict[str, Any]]]:
    """(format, email column, row reader) for a header row."""
    names = {h.strip().lower() for h in header}
    if {"email", "status", "subscribed_at"} <= names:
        return "newsletter", "email", _ours
    if "email address" in names:
        return "mailchimp", "email address", _mailchimp
    if "email" in names and names & {"attributes", "uuid"}:
        return "listmonk", "email", _listmonk
    if "email" in names:
        return "csv", "email", _plain
    raise ImportFileError(
        "The first row must be a header naming an email column: 'email' (this service's "
        "and listmonk's exports) or 'Email Address' (Mailchimp's)."
    )


def read_csv(lines: Iterable[str], report: ImportReport) -> Iterator[ImportRow | tuple[int, str]]:
    """Rows of a CSV file (text, BOM removed): ImportRow, or (line, error) for a bad one."""
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("The file is empty.") from None
    except UnicodeDecodeError:
        raise ImportFileError("The file is not UTF-8 text; save it as 'CSV UTF-8'.") from None
    except csv.Error as exc:
        raise ImportFileError(f"line 1: {exc}") from None
    fmt, email_column, reader_for = detect(header)
    report.format = fmt
    keys = [h.strip().lower() for h in header]
    line = reader.line_num
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise ImportFileError(
                f"line {start}: the file is not UTF-8 text; save it as 'CSV UTF-8'."
            ) from None
        except csv.Error as exc:
            raise ImportFileError(f"line {start}: {exc}") from None
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank line
        report.rows += 1
        by_name = {k: unneutralise(v) for k, v in zip(keys, cells, strict=False)}
        try:
            fields = reader_for(by_name, start)
            signup = validate_signup(
                {"email": by_name.get(email_column, ""), "name": fields.pop("name") or None}
            )
        except RowError as exc:
            yield start, str(exc)
            continue
        except FieldErrors as exc:
            yield start, "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
            continue
        yield ImportRow(line=start, email=signup.email, name=signup.name, **fields)


# Writing ---------------------------------------------------------------------------------


def _insert(session: AsyncSession, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _source_url(value: str | None) -> str | None:
    if value and urlsplit(value).scheme in {"http", "https"} and len(value) <= 2048:
        return value
    return None


async def _write_batch(
    db: Database,
    emails: Emails | None,
    mailing_list: MailingList,
    rows: list[ImportRow],
    options: ImportOptions,
    report: ImportReport,
) -> int:
    """Write one batch in one transaction; the number of confirmation emails queued."""
    now = utcnow()
    addresses = [r.email for r in rows]
    queued = 0
    async with db.write() as session:
        hashes = {email_hash(a): a for a in addresses}
        suppressed = {
            hashes[h]
            for h in await session.scalars(
                select(Suppression.email_hash).where(Suppression.email_hash.in_(list(hashes)))
            )
        }
        fresh = [r for r in rows if r.email not in suppressed]
        if fresh:
            await session.execute(
                _insert(session, Subscriber).on_conflict_do_nothing(),
                [
                    {
                        "email": r.email,
                        "name": r.name,
                        "attributes": r.attributes,
                        "created_at": now,
                    }
                    for r in fresh
                ],
            )
        known = await session.execute(
            select(Subscriber.email, Subscriber.id).where(
                Subscriber.email.in_([r.email for r in fresh])
            )
        )
        ids: dict[str, int] = {email: subscriber_id for email, subscriber_id in known}
        on_list = await session.execute(
            select(Subscription.subscriber_id, Subscription.status).where(
                Subscription.list_id == mailing_list.id,
                Subscription.subscriber_id.in_(list(ids.values())),
            )
        )
        existing: dict[int, SubscriptionStatus] = {sid: status for sid, status in on_list}
        new: list[tuple[ImportRow, dict[str, Any]]] = []
        for row in rows:
            if row.email in suppressed:
                report.suppressed += 1
                report.note(row.line, f"{row.email} was erased earlier and stays suppressed")
                continue
            status = existing.get(ids[row.email])
            if status is not None:
                if status == SubscriptionStatus.UNSUBSCRIBED and row.status != "unsubscribed":
                    report.left_unsubscribed += 1
                    report.note(
                        row.line,
                        f"{row.email} unsubscribed from this list earlier: left unsubscribed",
                    )
                else:
                    report.unchanged += 1
                continue
            if row.status == "failed":
                report.failed_in_file += 1
                report.note(row.line, f"{row.email} is marked undeliverable in the file")
                continue
            values: dict[str, Any] = {
                "list_id": mailing_list.id,
                "subscriber_id": ids[row.email],
                "confirm_nonce": new_nonce(),
                "created_at": now,
                "updated_at": now,
                "subscribed_at": now,
                "confirmation_sent_at": None,
                "confirmed_at": None,
                "unsubscribed_at": None,
            }
            if row.status == "unsubscribed":
                values.update(
                    status=SubscriptionStatus.UNSUBSCRIBED,
                    subscribed_at=row.subscribed_at or now,
                    confirmed_at=row.confirmed_at,
                    unsubscribed_at=row.unsubscribed_at or now,
                )
            elif options.confirmed and row.status == "confirmed":
                values.update(
                    status=SubscriptionStatus.CONFIRMED,
                    subscribed_at=row.subscribed_at or now,
                    confirmed_at=row.confirmed_at or now,
                )
            else:
                if emails is None:
                    raise RuntimeError("a double opt-in import needs the email builder")
                values.update(status=SubscriptionStatus.PENDING, confirmation_sent_at=now)
            existing[ids[row.email]] = values["status"]  # a repeated row is now "unchanged"
            new.append((row, values))
        if not new:
            return 0
        created = {
            subscriber_id: (sub_id, nonce)
            for sub_id, subscriber_id, nonce in await session.execute(
                _insert(session, Subscription)
                .values([v for _, v in new])
                .on_conflict_do_nothing()
                .returning(Subscription.id, Subscription.subscriber_id, Subscription.confirm_nonce)
            )
        }
        who = f"admin {options.admin}, from {options.source}"
        for row, values in new:
            found = created.get(values["subscriber_id"])
            if found is None:  # subscribed at this very moment by other means
                report.unchanged += 1
                continue
            sub_id, nonce = found
            status = values["status"]
            if status == SubscriptionStatus.UNSUBSCRIBED:
                report.unsubscribed += 1
                action, wording = ConsentAction.UNSUBSCRIBE, f"Imported as unsubscribed by {who}."
            elif status == SubscriptionStatus.CONFIRMED:
                report.confirmed += 1
                action = ConsentAction.CONFIRM
                wording = f"Imported as confirmed by {who}. Reason given: {options.reason.strip()}"
            else:
                report.confirmation_sent += 1
                action = ConsentAction.SUBSCRIBE
                wording = f"Imported by {who}; a confirmation email was sent."
                assert emails is not None
                session.add(
                    emails.confirmation(
                        Subscription(id=sub_id, confirm_nonce=nonce), row.email, now
                    )
                )
                queued += 1
            session.add(
                ConsentRecord(
                    subscription_id=sub_id,
                    action=action,
                    created_at=now,
                    page_url=_source_url(row.consent_source),
                    wording=wording,
                    method="import",
                )
            )
    return queued


async def import_rows(
    db: Database,
    emails: Emails | None,
    mailing_list: MailingList,
    lines: Iterable[str],
    options: ImportOptions,
    *,
    on_mail_queued: Callable[[], None] = lambda: None,
    on_batch: Callable[[], None] = lambda: None,
) -> ImportReport:
    """Import the CSV text ``lines`` into ``mailing_list``; what happened to each row."""
    report = ImportReport()
    seen: dict[str, int] = {}
    batch: list[ImportRow] = []

    async def flush() -> None:
        if batch:
            if await _write_batch(db, emails, mailing_list, batch, options, report):
                on_mail_queued()
            batch.clear()
        on_batch()

    for item in read_csv(lines, report):
        if isinstance(item, tuple):
            report.error(*item)
            continue
        first = seen.get(item.email)
        if first is not None:
            report.duplicates += 1
            report.note(item.line, f"{item.email} already on line {first}")
            continue
        seen[item.email] = item.line
        batch.append(item)
        if len(batch) >= BATCH:
            await flush()
    await flush()
    return report
