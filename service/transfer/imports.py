"""Import subscribers into a list from a CSV file: ours, Mailchimp's or listmonk's.

The format is recognised from the header row and each row read by that format's reader
(``service.transfer.formats``). Each row's address is checked like a signup's; a bad row is
reported with its line number and the rest go on. Rows are written in batches, one
transaction each; the subscriptions themselves, their consent records and confirmation
emails are written by ``service.subscriptions.add_imported``.

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from service.db import Database, insert_or_ignore
from service.emails import Emails
from service.errors import Refusal
from service.models import (
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    utcnow,
)
from service.subscriptions import Imported, add_imported
from service.suppressions import email_hash
from service.transfer.formats import NO_EMAIL_COLUMN, RowError, detect, unneutralise
from service.validation import FieldErrors, validate_signup

__all__ = ["ImportFileError", "ImportOptions", "ImportReport", "import_rows", "read_csv"]

BATCH = 500
MAX_NOTES = 1000


class ImportFileError(Refusal):
    """The file as a whole cannot be imported (no header, not UTF-8)."""

    status = 422


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


# Reading ---------------------------------------------------------------------------------


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
    detected = detect(header)
    if detected is None:
        raise ImportFileError(NO_EMAIL_COLUMN)
    fmt, email_column, reader_for = detected
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
            fields = reader_for(by_name)
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
    async with db.write() as session:
        hashes = {email_hash(r.email): r.email for r in rows}
        suppressed = {
            hashes[h]
            for h in await session.scalars(
                select(Suppression.email_hash).where(Suppression.email_hash.in_(list(hashes)))
            )
        }
        fresh = [r for r in rows if r.email not in suppressed]
        if fresh:
            await session.execute(
                insert_or_ignore(session, Subscriber),
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
        taken: set[int] = set()  # subscribers this batch already adds
        new: list[tuple[ImportRow, Imported]] = []
        for row in rows:
            if row.email in suppressed:
                report.suppressed += 1
                report.note(row.line, f"{row.email} was erased earlier and stays suppressed")
                continue
            subscriber_id = ids[row.email]
            status = existing.get(subscriber_id)
            if status == SubscriptionStatus.UNSUBSCRIBED and row.status != "unsubscribed":
                report.left_unsubscribed += 1
                report.note(
                    row.line, f"{row.email} unsubscribed from this list earlier: left unsubscribed"
                )
                continue
            if status is not None or subscriber_id in taken:
                report.unchanged += 1
                continue
            if row.status == "failed":
                report.failed_in_file += 1
                report.note(row.line, f"{row.email} is marked undeliverable in the file")
                continue
            taken.add(subscriber_id)
            new.append(
                (
                    row,
                    Imported(
                        subscriber_id,
                        row.email,
                        row.status,
                        row.subscribed_at,
                        row.confirmed_at,
                        row.unsubscribed_at,
                        _source_url(row.consent_source),
                    ),
                )
            )
        added = await add_imported(
            session,
            mailing_list,
            [imported for _, imported in new],
            confirmed=options.confirmed,
            admin=options.admin,
            source=options.source,
            reason=options.reason,
            emails=emails,
            now=now,
        )
    queued = 0
    for _, imported in new:
        status = added.get(imported.subscriber_id)
        if status is None:  # subscribed at this very moment by other means
            report.unchanged += 1
        elif status == SubscriptionStatus.UNSUBSCRIBED:
            report.unsubscribed += 1
        elif status == SubscriptionStatus.CONFIRMED:
            report.confirmed += 1
        else:
            report.confirmation_sent += 1
            queued += 1
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
