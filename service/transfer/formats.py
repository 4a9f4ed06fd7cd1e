"""The file formats, both directions: this service's own, Mailchimp's and listmonk's.

Each format is here once: its columns, how an export row is written in it and how one of
its rows is read back by an import. ``service.transfer.exports`` and
``service.transfer.imports`` do the streaming and the storing.

An export row, whatever the format, comes from the database as ``COLUMNS``, all text:
``email, name, list, status, subscribed_at, confirmed_at, unsubscribed_at,
consent_source, attributes``, then the consent evidence: ``signup_ip, signup_user_agent,
signup_wording`` from the subscription's latest signup record and ``confirm_ip,
confirm_user_agent, confirm_wording`` from its latest confirmation record (empty when
there is none; the times are ``subscribed_at`` and ``confirmed_at``). ``status`` is
``pending``, ``confirmed``, ``unsubscribed``, or ``failed`` when the latest email to
that subscription could not be delivered. ``consent_source`` is the page the person
signed up on, or how they came (``form``, ``import``, ``admin``). An imported row becomes
the fields of an ``ImportRow``: ``name``, ``attributes``, ``status`` (one of
``STATUSES``) and the times the file gives.

CSV follows RFC 4180 (header row, CRLF, quotes doubled, fields with commas, quotes or line
breaks quoted) and is safe to open in a spreadsheet: a cell starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return would be run as a formula, so it gets a leading
``'`` (as does a cell made of ``'`` followed by one of those, so that the import can undo
exactly what the export did). The email column too: ``=1+2@example.com`` is a valid
address. NDJSON is left as it is; it is not opened by spreadsheets. Nor are the Mailchimp
and listmonk layouts guarded: they are read by those tools' importers, which would keep a
``'`` as part of the address or name.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "COLUMNS",
    "DROPPED",
    "FORMATS",
    "LISTMONK_COLUMNS",
    "MAILCHIMP_COLUMNS",
    "MAPPED",
    "NO_EMAIL_COLUMN",
    "STATUSES",
    "WRITERS",
    "Reader",
    "RowError",
    "Writer",
    "detect",
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
    "signup_ip",
    "signup_user_agent",
    "signup_wording",
    "confirm_ip",
    "confirm_user_agent",
    "confirm_wording",
)
STATUSES = ("pending", "confirmed", "unsubscribed", "failed")
FORMATS = ("csv", "ndjson", "mailchimp", "listmonk")

Row = Sequence[Any]
Writer = Callable[[Iterable[Row]], str]  # export rows -> text
Reader = Callable[[dict[str, str]], dict[str, Any]]  # cells by lower-case column -> fields


class RowError(Exception):
    """One imported row cannot be read; the message names the column."""


def media_type(fmt: str) -> str:
    return "application/x-ndjson" if fmt == "ndjson" else "text/csv; charset=utf-8"


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


def _attributes(raw: str | None) -> dict[str, Any]:
    if not raw or raw in ("{}", "null"):
        return {}
    loaded = json.loads(raw)
    return loaded if isinstance(loaded, dict) else {}


def _attributes_text(raw: str | None) -> str:
    """The attributes as a JSON object, ``{}`` when there are none."""
    if not raw or raw == "{}" or raw == "null":
        return "{}"
    return json.dumps(_attributes(raw), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


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


class _Csv:
    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")

    def take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


# Ours: CSV and NDJSON --------------------------------------------------------------------


def _ours_csv() -> tuple[str, Writer]:
    out = _Csv()
    out.writer.writerow(COLUMNS)
    header = out.take()
    risky = _RISKY

    def write(rows: Iterable[Row]) -> str:
        cells = []
        # The hot loop of a large export: checks inlined, most cells pass untouched. The
        # user agents and wordings are someone else's text as much as a name is.
        for e, n, s, st, a, b, c, src, attrs, sip, sua, sw, cip, cua, cw in rows:
            if e[:1] in risky:
                e = neutralise(e)
            if n and n[0] in risky:
                n = neutralise(n)
            if src and src[0] in risky:
                src = neutralise(src)
            if sua and sua[0] in risky:
                sua = neutralise(sua)
            if sw and sw[0] in risky:
                sw = neutralise(sw)
            if cua and cua[0] in risky:
                cua = neutralise(cua)
            if cw and cw[0] in risky:
                cw = neutralise(cw)
            cells.append(
                (e, n, s, st, a, b, c, src, _attributes_text(attrs), sip, sua, sw, cip, cua, cw)
            )
        out.writer.writerows(cells)
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
                    "signup_ip": sip,
                    "signup_user_agent": sua,
                    "signup_wording": sw,
                    "confirm_ip": cip,
                    "confirm_user_agent": cua,
                    "confirm_wording": cw,
                }
            )
            + "\n"
            for e, n, s, st, a, b, c, src, attrs, sip, sua, sw, cip, cua, cw in rows
        )

    return "", write


def _read_ours(cells: dict[str, str]) -> dict[str, Any]:
    status = cells.get("status", "").strip() or "confirmed"
    if status not in STATUSES:
        raise RowError(f"status: {status!r} is not pending, confirmed, unsubscribed or failed")
    return {
        "name": cells.get("name", ""),
        "attributes": _json_object(cells.get("attributes", ""), "attributes"),
        "status": status,
        "opt_out": "unsubscribed" if status == "unsubscribed" else None,
        "subscribed_at": _time(cells.get("subscribed_at", ""), "subscribed_at"),
        "confirmed_at": _time(cells.get("confirmed_at", ""), "confirmed_at"),
        "unsubscribed_at": _time(cells.get("unsubscribed_at", ""), "unsubscribed_at"),
        "consent_source": cells.get("consent_source", "").strip() or None,
        # The consent evidence this service exported, read back into consent records.
        "optin_ip": _ip_as_written(cells.get("signup_ip", "")),
        "optin_user_agent": _evidence(cells.get("signup_user_agent", ""), 512),
        "optin_wording": _evidence(cells.get("signup_wording", ""), MAX_WORDING),
        "confirm_ip": _ip_as_written(cells.get("confirm_ip", "")),
        "confirm_user_agent": _evidence(cells.get("confirm_user_agent", ""), 512),
        "confirm_wording": _evidence(cells.get("confirm_wording", ""), MAX_WORDING),
    }


MAX_WORDING = 10_000


def _evidence(value: str, limit: int) -> str | None:
    """A consent record's text as exported (kept exactly, cut to what a record holds)."""
    return value[:limit] or None


def _ip_as_written(value: str) -> str | None:
    """An IP address as exported, kept as written if it is one."""
    return value.strip() if _ip(value) else None


# Mailchimp -------------------------------------------------------------------------------
# Its audience export: one file per status; the unsubscribed one has UNSUB_TIME filled in,
# the cleaned one (addresses that bounced) has a CLEAN_TIME column. OPTIN_IP and
# CONFIRM_IP are its own names for the signup's and the confirmation's addresses, which
# its import keeps as the contact's consent evidence.

MAILCHIMP_COLUMNS = (
    "Email Address",
    "First Name",
    "Last Name",
    "TAGS",
    "OPTIN_TIME",
    "OPTIN_IP",
    "CONFIRM_TIME",
    "CONFIRM_IP",
    "UNSUB_TIME",
)


def _split_name(name: str | None) -> tuple[str, str]:
    """First and last name: the first word, and the rest ("Quinn", "van der Berg")."""
    first, _, last = (name or "").strip().partition(" ")
    return first, last.strip()


def _mailchimp_time(value: str | None) -> str:
    return value.replace("T", " ").rstrip("Z") if value else ""


def _mailchimp_csv() -> tuple[str, Writer]:
    out = _Csv()
    out.writer.writerow(MAILCHIMP_COLUMNS)
    header = out.take()

    def write(rows: Iterable[Row]) -> str:
        for e, n, slug, _st, a, b, c, _src, _attrs, sip, _sua, _sw, cip, _cua, _cw in rows:
            first, last = _split_name(n)
            out.writer.writerow(  # as they are: for Mailchimp's importer, not a spreadsheet
                (
                    e,
                    first,
                    last,
                    slug,
                    _mailchimp_time(a),
                    sip or "",
                    _mailchimp_time(b),
                    cip or "",
                    _mailchimp_time(c),
                )
            )
        return out.take()

    return header, write


def _read_mailchimp(cells: dict[str, str]) -> dict[str, Any]:
    name = " ".join(p for p in (cells.get("first name", ""), cells.get("last name", "")) if p)
    opt_out: str | None = None
    if cells.get("unsub_time", "").strip():
        status = opt_out = "unsubscribed"
    elif "clean_time" in cells:
        status, opt_out = "failed", "cleaned"
    else:
        status = "confirmed"
    return {
        "name": name,
        "attributes": {},
        "status": status,
        "opt_out": opt_out,
        "subscribed_at": _time(cells.get("optin_time", ""), "OPTIN_TIME"),
        "confirmed_at": _time(cells.get("confirm_time", ""), "CONFIRM_TIME"),
        "unsubscribed_at": _time(cells.get("unsub_time", ""), "UNSUB_TIME"),
        "optin_ip": _ip(cells.get("optin_ip", "")),
        "confirm_ip": _ip(cells.get("confirm_ip", "")),
    }


def _ip(value: str) -> str | None:
    """An address as Mailchimp wrote it, if it is one (the consent record keeps it)."""
    value = value.strip()
    if not value:
        return None  # most rows: no parsing
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


# listmonk --------------------------------------------------------------------------------
# Its subscriber import and export: email, name, attributes (JSON); a blocklisted
# subscriber has opted out of everything. Its import takes the list and the mode
# (subscribe or blocklist) from the person importing, for the whole file, so an export in
# this layout is of one list and one status (``exports.check_format``).

LISTMONK_COLUMNS = ("email", "name", "attributes")


def _listmonk_csv() -> tuple[str, Writer]:
    out = _Csv()
    out.writer.writerow(LISTMONK_COLUMNS)
    header = out.take()

    def write(rows: Iterable[Row]) -> str:
        out.writer.writerows(
            (e, n or "", _attributes_text(attrs))  # as they are: for listmonk's importer
            for e, n, _s, _st, _a, _b, _c, _src, attrs, *_evidence in rows
        )
        return out.take()

    return header, write


def _read_listmonk(cells: dict[str, str]) -> dict[str, Any]:
    blocked = cells.get("status", "").strip().lower() == "blocklisted"
    return {
        "name": cells.get("name", ""),
        "attributes": _json_object(cells.get("attributes", ""), "attributes"),
        "status": "unsubscribed" if blocked else "confirmed",
        "opt_out": "blocklisted" if blocked else None,
    }


# Any other CSV file with an email column -------------------------------------------------


def _read_plain(cells: dict[str, str]) -> dict[str, Any]:
    return {"name": cells.get("name", ""), "attributes": {}, "status": "confirmed"}


# What each format's columns become -------------------------------------------------------
# A column a reader maps is kept in its place; a column listed as dropped is the other
# tool's bookkeeping, with no place here (the import's summary lists it); any other column
# is kept in a new subscriber's attributes, under its name as the file spells it.

MAPPED: dict[str, frozenset[str]] = {
    "newsletter": frozenset(COLUMNS) - {"list"},
    "mailchimp": frozenset(
        {
            "email address",
            "first name",
            "last name",
            "optin_time",
            "optin_ip",
            "confirm_time",
            "confirm_ip",
            "unsub_time",
            "clean_time",
        }
    ),
    "listmonk": frozenset({"email", "name", "attributes", "status"}),
    "csv": frozenset({"email", "name"}),
}
DROPPED: dict[str, frozenset[str]] = {
    "newsletter": frozenset({"list"}),
    "mailchimp": frozenset(
        {
            "member_rating",
            "leid",
            "euid",
            "gmtoff",
            "dstoff",
            "unsub_campaign_title",
            "unsub_campaign_id",
            "unsub_reason",
            "unsub_reason_other",
            "clean_campaign_title",
            "clean_campaign_id",
            "last_changed",
        }
    ),
    "listmonk": frozenset({"uuid", "created_at", "updated_at"}),
    "csv": frozenset(),
}


# Choosing --------------------------------------------------------------------------------

WRITERS: dict[str, Callable[[], tuple[str, Writer]]] = {
    "csv": _ours_csv,
    "ndjson": _ndjson,
    "mailchimp": _mailchimp_csv,
    "listmonk": _listmonk_csv,
}

NO_EMAIL_COLUMN = (
    "The first row must be a header naming an email column: 'email' (this service's "
    "and listmonk's exports) or 'Email Address' (Mailchimp's)."
)


def detect(header: list[str]) -> tuple[str, str, Reader] | None:
    """(format, email column, row reader) for an import's header row; None if no email."""
    names = {h.strip().lower() for h in header}
    if {"email", "status", "subscribed_at"} <= names:
        return "newsletter", "email", _read_ours
    if "email address" in names:
        return "mailchimp", "email address", _read_mailchimp
    if "email" in names and names & {"attributes", "uuid"}:
        return "listmonk", "email", _read_listmonk
    if "email" in names:
        return "csv", "email", _read_plain
    return None
