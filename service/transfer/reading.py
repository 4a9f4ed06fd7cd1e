"""Reading an import's file, whole, before anything is written; and the import's report.

The file is decoded (UTF-8 with or without a BOM, UTF-16 with a BOM, else Windows-1252),
its delimiter found from the header row (comma, semicolon, tab), and every row read by
its format's reader (``service.transfer.formats``). A file that cannot be decoded or
parsed raises ``ImportFileError`` naming its line as a text editor counts lines; a bad
row is yielded as (line, message) and the rest go on.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.errors import Refusal
from service.transfer.formats import (
    DROPPED,
    MAPPED,
    NO_EMAIL_COLUMN,
    RowError,
    detect,
    unneutralise,
)
from service.validation import FieldErrors, validate_signup

__all__ = ["ImportFileError", "ImportReport", "ImportRow", "decode", "read_csv"]

MAX_NOTES = 1000


class ImportFileError(Refusal):
    """The file as a whole cannot be imported (no header, undecodable, broken quoting)."""

    status = 422


@dataclass
class ImportReport:
    format: str = ""
    dry_run: bool = False
    encoding: str = ""
    delimiter: str = ""
    columns_not_kept: list[str] = field(default_factory=list)
    rows: int = 0
    confirmed: int = 0
    confirmation_sent: int = 0  # pending, their confirmation email due now
    confirmation_waiting: int = 0  # pending, their confirmation email waits for the cap
    updated: int = 0  # already here: name or attributes updated (update_existing)
    unsubscribed: int = 0
    unsubscribed_by_file: int = 0
    unchanged: int = 0
    left_unsubscribed: int = 0
    suppressed: int = 0
    blocklisted: int = 0
    duplicates: int = 0
    failed_in_file: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return (
            self.confirmed
            + self.confirmation_sent
            + self.confirmation_waiting
            + self.unsubscribed
            + self.unsubscribed_by_file
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
            "confirmation_waiting": self.confirmation_waiting,
            "updated": self.updated,
            "unsubscribed": self.unsubscribed,
            "unsubscribed_by_file": self.unsubscribed_by_file,
            "unchanged": self.unchanged,
            "left_unsubscribed": self.left_unsubscribed,
            "suppressed": self.suppressed,
            "blocklisted": self.blocklisted,
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
            f"{self.confirmation_sent} sent a confirmation email now (pending until they click)",
            f"{self.unsubscribed} recorded as unsubscribed (as in the file)",
            f"{self.unchanged} already on the list, left unchanged",
        ]
        if self.confirmation_waiting:
            lines.append(
                f"{self.confirmation_waiting} pending, their confirmation email queued to be "
                "sent as the service-wide confirmation cap allows"
            )
        if self.updated:
            lines.append(f"{self.updated} already here: name or attributes updated")
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
        if self.blocklisted:
            lines.append(f"{self.blocklisted} blocklisted (address or domain): not imported")
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
    optin_user_agent: str | None = None  # our export's consent evidence, read back
    optin_wording: str | None = None
    confirm_user_agent: str | None = None
    confirm_wording: str | None = None


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
