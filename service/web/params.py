"""Reading parameters from a URL: numbers, row ids, dates and the subscriber search, each
refusing anything that cannot be what it claims (a foreign digit, an id past any row)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.convertors import Convertor, register_url_convertor

from service.people import SHOWN_STATUSES, SearchFilters

__all__ = ["MAX_ROW_ID", "filters_from", "number", "row_id"]


class _PersonId(Convertor[str]):
    """``{subscriber_id:person}``: any path segment but ``bulk``, which names the bulk
    actions, so that ``PATCH .../subscribers/bulk`` is a 405, not a search for person
    "bulk". Checked and turned into a number by `row_id`."""

    regex = "(?!bulk$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("person", _PersonId())

MAX_ROW_ID = 2**31 - 1  # INTEGER on PostgreSQL: a larger number is no row's id


def number(value: str, *, most: int) -> int | None:
    """ASCII digits as a number, at most ``most``; None for anything else (``²`` included)."""
    if not value or not (value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0") or "0"
    return most if len(digits) > len(str(most)) else min(int(digits), most)


def row_id(value: str) -> int | None:
    """A row id from a URL, or None when it cannot be one (so: not found)."""
    found = number(value, most=MAX_ROW_ID + 1)
    return found if found is not None and 0 < found <= MAX_ROW_ID else None


def _date(value: str) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        return None


def filters_from(params: Any) -> SearchFilters:
    until = _date(params.get("until", ""))
    return SearchFilters(
        # NUL is no character any address, name or slug holds (and PostgreSQL refuses it).
        query=params.get("q", "")[:200].replace("\x00", ""),
        list_slug=params.get("list", "")[:64].replace("\x00", ""),
        status=params.get("status", "") if params.get("status") in SHOWN_STATUSES else "",
        since=_date(params.get("since", "")),
        until=until + timedelta(days=1) if until else None,  # the "until" day is included
    )
