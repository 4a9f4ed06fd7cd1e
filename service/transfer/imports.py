"""Import subscribers into a list from a CSV file: ours, Mailchimp's or listmonk's.

An import never half-happens: the whole file is read and checked first (its encoding,
its delimiter, its header, every row), and only then written. A file that cannot be
decoded or parsed writes nothing, and the refusal names its line as a text editor counts
lines (a quoted cell may span several). The encoding is UTF-8 (with or without a BOM),
UTF-16 with a BOM, or else Windows-1252 (what Excel saves); the delimiter is a comma, a
semicolon or a tab, whichever the header row uses. The format is recognised from the
header row and each row read by that format's reader (``service.transfer.formats``). Each
row's address is checked like a signup's; a bad row is reported with its line number and
the rest go on. Rows are written in batches, one transaction each; the subscriptions
themselves, their consent records and confirmation emails are written by
``service.subscriptions``.

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
not imported. An opt-out in the file wins over a subscription here: whoever is confirmed
or pending on the list and marked unsubscribed, cleaned or blocklisted in the file is
unsubscribed (``unsubscribed_by_file`` in the report).

Columns a format maps are kept in their place (Mailchimp's opt-in and confirmation times
and IP addresses go into the consent records); the other tool's bookkeeping columns are
dropped; any other column is kept in a new subscriber's attributes. The report lists the
columns that were not kept. Rows still pending in the file were never confirmed, so they get a
confirmation email even in a confirmed import.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
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
from service.subscriptions import Imported, add_imported, unsubscribe_by_import
from service.suppressions import email_hash
from service.transfer.formats import (
    DROPPED,
    MAPPED,
    NO_EMAIL_COLUMN,
    RowError,
    detect,
    unneutralise,
)
from service.validation import FieldErrors, validate_signup

__all__ = [
    "ImportFileError",
    "ImportOptions",
    "ImportReport",
    "decode",
    "import_rows",
    "read_csv",
]

BATCH = 500
MAX_NOTES = 1000
ACTIVE = (SubscriptionStatus.CONFIRMED, SubscriptionStatus.PENDING)


class ImportFileError(Refusal):
    """The file as a whole cannot be imported (no header, undecodable, broken quoting)."""

    status = 422


@dataclass(frozen=True)
class ImportOptions:
    confirmed: bool  # False: double opt-in
    admin: str
    reason: str = ""
    source: str = "upload"  # the file's name, for the consent record
    dry_run: bool = False  # report what would change, write nothing

    def __post_init__(self) -> None:
        if self.confirmed and not self.reason.strip():
            raise ValueError(
                "Say where and how these people consented (the reason): it is kept as their "
                "consent record."
            )


@dataclass
class ImportReport:
    format: str = ""
    dry_run: bool = False
    encoding: str = ""
    delimiter: str = ""
    columns_not_kept: list[str] = field(default_factory=list)
    rows: int = 0
    confirmed: int = 0
    confirmation_sent: int = 0
    unsubscribed: int = 0
    unsubscribed_by_file: int = 0
    unchanged: int = 0
    left_unsubscribed: int = 0
    suppressed: int = 0
    duplicates: int = 0
    failed_in_file: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return (
            self.confirmed + self.confirmation_sent + self.unsubscribed + self.unsubscribed_by_file
        )

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
            "dry_run": self.dry_run,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "columns_not_kept": self.columns_not_kept,
            "rows": self.rows,
            "confirmed": self.confirmed,
            "confirmation_sent": self.confirmation_sent,
            "unsubscribed": self.unsubscribed,
            "unsubscribed_by_file": self.unsubscribed_by_file,
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
            f"{self.rows} rows read ({self.format or 'unknown'} format, {self.encoding}, "
            f"{DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))}-separated)",
            f"{self.confirmed} subscribed as confirmed",
            f"{self.confirmation_sent} sent a confirmation email (pending until they click)",
            f"{self.unsubscribed} recorded as unsubscribed (as in the file)",
            f"{self.unchanged} already on the list, left unchanged",
        ]
        if self.unsubscribed_by_file:
            lines.append(
                f"{self.unsubscribed_by_file} on the list here but opted out in the file: "
                "unsubscribed"
            )
        if self.columns_not_kept:
            lines.append("Columns not kept: " + ", ".join(self.columns_not_kept))
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
        if self.dry_run:
            lines.insert(0, "Dry run: nothing was written; this is what the import would do.")
        return "\n".join(lines)


@dataclass(frozen=True)
class ImportRow:
    line: int
    email: str
    name: str | None
    attributes: dict[str, Any]
    status: str  # confirmed, pending, unsubscribed, failed
    opt_out: str | None = None  # the file's word for an opt-out: unsubscribed, cleaned, ...
    subscribed_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    consent_source: str | None = None
    optin_ip: str | None = None
    confirm_ip: str | None = None


# Reading ---------------------------------------------------------------------------------

DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode(data: bytes) -> tuple[str, str]:
    """The file's text and the name of its encoding; ImportFileError naming the line of
    the first byte that cannot be read.

    A BOM says UTF-8 or UTF-16. Without one, the file is UTF-8 if it decodes as UTF-8, and
    Windows-1252 if it holds no UTF-8 text at all; a file with UTF-8 text and a byte that is
    not UTF-8 is mixed up, and refused rather than guessed at.
    """
    if data.startswith(codecs.BOM_UTF8):
        return _decode(data, len(codecs.BOM_UTF8), "utf-8", "UTF-8 with BOM")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16-le" if data.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
        try:
            return data[2:].decode(codec), "UTF-16"
        except UnicodeDecodeError as exc:
            line = data[2 : 2 + exc.start].decode(codec, "ignore").count("\n") + 1
            raise ImportFileError(
                f"line {line}: the file starts as UTF-16 text but this line is not UTF-16."
            ) from None
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as exc:
        bad = exc.start
    if any(ord(c) > 0x7F and c != "\ufffd" for c in data.decode("utf-8", "replace")):
        raise ImportFileError(
            f"line {_line_of(data, bad)}: byte 0x{data[bad]:02x} is not UTF-8, though the "
            "rest of the file is UTF-8 text; fix that line or save the file as 'CSV UTF-8'."
        )
    return _decode(data, 0, "cp1252", "Windows-1252")


def _decode(data: bytes, start: int, codec: str, name: str) -> tuple[str, str]:
    try:
        return data[start:].decode(codec), name
    except UnicodeDecodeError as exc:
        bad = start + exc.start
        raise ImportFileError(
            f"line {_line_of(data, bad)}: byte 0x{data[bad]:02x} is not {name} text; "
            "save the file as 'CSV UTF-8'."
        ) from None


def _delimiter(text: str) -> str:
    """The delimiter the header row uses the most (a comma if none)."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(text: str, report: ImportReport) -> Iterator[ImportRow | tuple[int, str]]:
    """Rows of a CSV file's text: ImportRow, or (line, error) for a bad one.

    Raises ImportFileError for a file that cannot be read as a whole: call it to the end
    before writing anything.
    """
    report.delimiter = _delimiter(text)
    # Strict: a quote left open would otherwise swallow the rest of the file into a cell.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=report.delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("The file is empty.") from None
    except csv.Error as exc:
        raise ImportFileError(f"line 1: {exc}") from None
    detected = detect(header)
    if detected is None:
        raise ImportFileError(NO_EMAIL_COLUMN)
    fmt, email_column, reader_for = detected
    report.format = fmt
    names = [h.strip() for h in header]
    keys = [n.lower() for n in names]
    mapped, dropped = MAPPED[fmt], DROPPED[fmt]
    extra = [
        (i, n)
        for i, (n, k) in enumerate(zip(names, keys, strict=True))
        if n and k not in mapped and k not in dropped
    ]
    report.columns_not_kept = [n for n, k in zip(names, keys, strict=True) if n and k in dropped]
    line = reader.line_num
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
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
        for i, name in extra:
            if i < len(cells) and cells[i].strip():
                fields["attributes"].setdefault(name, unneutralise(cells[i].strip()))
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
    try:
        return await _write(db, emails, mailing_list, rows, options, report)
    except _DryRun:
        return 0


class _DryRun(Exception):
    """Raised at the end of a dry run's transaction, to roll it back."""


async def _write(
    db: Database,
    emails: Emails | None,
    mailing_list: MailingList,
    rows: list[ImportRow],
    options: ImportOptions,
    report: ImportReport,
) -> int:
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
        opted_out: dict[int, str] = {}  # on the list here, opted out in the file
        new: list[tuple[ImportRow, Imported]] = []
        for row in rows:
            if row.email in suppressed:
                report.suppressed += 1
                report.note(row.line, f"{row.email} was erased earlier and stays suppressed")
                continue
            subscriber_id = ids[row.email]
            status = existing.get(subscriber_id)
            if status in ACTIVE and row.opt_out and subscriber_id not in taken:
                taken.add(subscriber_id)
                opted_out[subscriber_id] = row.opt_out
                continue
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
                        row.optin_ip,
                        row.confirm_ip,
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
        unsubscribed = await unsubscribe_by_import(
            session,
            mailing_list,
            opted_out,
            admin=options.admin,
            source=options.source,
            now=now,
        )
        report.unsubscribed_by_file += len(unsubscribed)
        report.unchanged += len(opted_out) - len(unsubscribed)  # unsubscribed meanwhile
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
        if options.dry_run:
            raise _DryRun  # rolls the transaction back: nothing written, the counts kept
    return queued


async def import_rows(
    db: Database,
    emails: Emails | None,
    mailing_list: MailingList,
    data: bytes,
    options: ImportOptions,
    *,
    on_mail_queued: Callable[[], None] = lambda: None,
    on_batch: Callable[[int, int], None] = lambda done, total: None,
) -> ImportReport:
    """Import the CSV file ``data`` into ``mailing_list``; what happened to each row.

    The whole file is read and checked before anything is written: ImportFileError (and
    nothing stored) if it cannot be read.
    """
    report = ImportReport(dry_run=options.dry_run)
    text, report.encoding = decode(data)
    rows = list(read_csv(text, report))
    del text
    seen: dict[str, int] = {}
    batch: list[ImportRow] = []
    done = 0

    async def flush() -> None:
        nonlocal done
        done += len(batch)
        if batch:
            if await _write_batch(db, emails, mailing_list, batch, options, report):
                on_mail_queued()
            batch.clear()
        on_batch(done, len(rows))

    for item in rows:
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
