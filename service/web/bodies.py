"""Reading a request body (JSON or a form): every way it can be wrong becomes a 4xx that
says how.

``json.loads`` alone lets some bodies through to a 500 or to the database: nesting deep
enough to exhaust the recursion limit, integers longer than Python converts, unpaired
surrogate escapes (``"\\ud800"``, text no database stores) and repeated keys, where the
last one silently wins.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.errors import Refusal
from service.web.negotiation import FORM_TYPES, media_type

__all__ = ["BadBody", "parse_json_object", "read_fields"]

MAX_FIELDS = 20


class BadBody(Refusal):
    """A body that cannot be read as the request it claims to be."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


EXAMPLE = '{"email": "reader@example.com"}'


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadBody(422, f"The field {key!r} was sent more than once.")
        result[key] = value
    return result


def parse_json_object(raw: bytes, *, example: str = EXAMPLE) -> dict[str, Any]:
    if not raw.strip():
        raise BadBody(400, f"The body is empty: send a JSON object such as {example}.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadBody(400, "The body is not valid UTF-8.") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_repeats)
    except json.JSONDecodeError as exc:
        raise BadBody(
            400, f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise BadBody(400, "The body is not valid here: its JSON is nested too deeply.") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise BadBody(400, f"The body is not valid here: {exc}.") from None
    if not isinstance(data, dict):
        raise BadBody(422, f"The JSON body must be an object such as {example}.")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody(
            400, "The body contains an unpaired surrogate escape (such as \\ud800): not text."
        ) from None
    return data


async def read_fields(request: Request[Any]) -> dict[str, Any]:
    """A JSON object or a form's fields, whichever the request sent, as one flat dict."""
    kind = media_type(request)
    if kind == "application/json" or kind.endswith("+json"):
        return parse_json_object(await request.body())
    if kind in FORM_TYPES:
        # Files are taken only to be refused by name below (the body limit bounds them).
        fields: dict[str, Any] = {}
        async with request.form(max_files=MAX_FIELDS, max_fields=MAX_FIELDS) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    raise BadBody(422, f"The field {key!r} must be text, not a file.")
                if key in fields:
                    raise BadBody(422, f"The field {key!r} was sent more than once.")
                fields[key] = value
        return fields
    raise BadBody(
        415,
        f"Unsupported Content-Type ({kind or 'none'}): send application/json, "
        "application/x-www-form-urlencoded or multipart/form-data.",
    )
