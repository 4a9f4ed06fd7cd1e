"""Check a signup's fields and say, per field, what is wrong."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from service.errors import Refusal
from service.i18n import LANGUAGES
from service.subscriptions import Signup

__all__ = ["FIX_FIELDS", "MAX_EMAIL", "MAX_NAME", "MAX_URL", "FieldErrors", "validate_signup"]

FIX_FIELDS = "Please correct the marked fields."

MAX_EMAIL = 254  # RFC 5321 path limit, in octets
MAX_LOCAL_OCTETS = 64  # RFC 5321, before the @
MAX_NAME = 100
MAX_URL = 2048


class FieldErrors(Refusal):
    """Fields at fault, each with what is wrong with it."""

    status = 422

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(FIX_FIELDS, fields=errors)
        self.errors = errors


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in text)


def _optional_text(value: Any, limit: int) -> tuple[str | None, str | None]:
    """(cleaned value, error)."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, f"must be text, not {_json_type(value)}"
    value = value.strip()
    if len(value) > limit:
        return None, f"must be at most {limit} characters"
    if _has_control(value):
        return None, "must not contain control characters or line breaks"
    return value or None, None


def _json_type(value: Any) -> str:
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _octet_limits(address: str, ascii_domain: str) -> str:
    """RFC 5321 counts octets as the address travels (UTF-8 before the @, the domain in
    ASCII): a non-ASCII address can pass a count of characters and still be too long."""
    local = address.rpartition("@")[0].encode()
    if len(local) > MAX_LOCAL_OCTETS:
        return (
            f"is too long before the @-sign ({len(local)} octets as sent; "
            f"at most {MAX_LOCAL_OCTETS})"
        )
    if len(local) + 1 + len(ascii_domain) > MAX_EMAIL:
        return f"must be at most {MAX_EMAIL} octets as sent"
    return ""


def validate_signup(data: Mapping[str, Any], *, check_deliverability: bool = False) -> Signup:
    errors: dict[str, str] = {}
    email = data.get("email")
    normalised = ""
    if email is None or (isinstance(email, str) and not email.strip()):
        errors["email"] = "is required"
    elif not isinstance(email, str):
        errors["email"] = f"must be text, not {_json_type(email)}"
    elif len(email.strip()) > MAX_EMAIL:
        errors["email"] = f"must be at most {MAX_EMAIL} characters"
    else:
        try:
            # strict: RFC 5321's limits too (64 octets before the @).
            checked = validate_email(
                email.strip(), check_deliverability=check_deliverability, strict=True
            )
            normalised = checked.normalized.lower()
            problem = _octet_limits(normalised, checked.ascii_domain)
            if problem:
                errors["email"] = problem
        except EmailNotValidError as exc:
            errors["email"] = str(exc)

    name, error = _optional_text(data.get("name"), MAX_NAME)
    if error:
        errors["name"] = error
    # A form's fields are text (JSON's null included: leave a field out instead).
    text = ("name", "page_url", "consent", "lang", "form_stamp", "pow_challenge", "pow_solution")
    for key in text:
        if key in data and not isinstance(data[key], str):
            errors.setdefault(key, f"must be text, not {_json_type(data[key])}")

    page_url, error = _optional_text(data.get("page_url"), MAX_URL)
    if error:
        errors["page_url"] = error
    elif page_url:
        parts = urlsplit(page_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            errors["page_url"] = "must be an http(s) URL"

    language = data.get("lang")  # the box's language, if a page asked for another
    if language is not None and language not in LANGUAGES:
        errors["lang"] = f"must be one of {', '.join(LANGUAGES)}"

    if errors:
        raise FieldErrors(errors)
    return Signup(email=normalised, name=name, page_url=page_url, language=language)
