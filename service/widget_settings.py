"""A list's subscribe-box settings: defaults, validation, and what the widget is sent.

Stored as JSON on the list (only the values someone changed); texts left unset follow the
list's language. Every value is checked here, because the widget puts them into its CSS
and DOM: colours must be hex, URLs http(s), choices from a fixed set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from service.i18n import texts
from service.models import MailingList
from service.subscriptions import consent_wording

__all__ = [
    "BOX_SETTINGS",
    "DEFAULTS",
    "TARGETING_KEYS",
    "TEXT_KEYS",
    "WIDGET_TEXTS",
    "check_changes",
    "effective",
    "parse_flag",
    "validate_changes",
]

TEXT_KEYS = ("title", "text", "button", "success")
# Texts the widget needs besides the list's own copy (labels, messages).
WIDGET_TEXTS = (
    "email_label",
    "name_label",
    "close",
    "invalid_email",
    "consent_required",
    "sending",
    "too_many",
    "too_many_until",
    "network",
    "not_allowed",
    "privacy",
    "result_ok_title",
)

DEFAULTS: dict[str, Any] = {
    "position": "bottom-right",
    "theme": "light",
    "accent": "#1a56db",
    "trigger": "delay",
    "delay": 5,
    "scroll": 50,
    "dismissDays": 30,
    "nameField": False,
    "consentCheckbox": False,
    "privacyUrl": "",
    "proofOfWork": False,
    # Targeting: where and when the box shows (all off by default).
    "showOn": "",
    "hideOn": "",
    "afterViews": 0,
    "minWidth": 0,
    "startDate": "",
    "endDate": "",
}
TARGETING_KEYS = ("showOn", "hideOn", "afterViews", "minWidth", "startDate", "endDate")

_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")


def _choice(*options: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return check


def _number(low: int, high: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("must be a whole number") from None
        if isinstance(value, bool) or not low <= number <= high:
            raise ValueError(f"must be from {low} to {high}")
        return number

    return check


def parse_flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in {"true", "yes", "on", "1"}:
        return True
    if str(value).lower() in {"false", "no", "off", "0"}:
        return False
    raise ValueError("must be true or false")


def _colour(value: Any) -> Any:
    if not isinstance(value, str) or not _HEX.match(value):
        raise ValueError("must be a hex colour such as #1a56db")
    return value.lower()


def _url(value: Any) -> Any:
    if value in ("", None):
        return ""
    parts = urlsplit(str(value))
    if parts.scheme not in {"http", "https"} or not parts.netloc or len(str(value)) > 2000:
        raise ValueError("must be an http(s) URL")
    return str(value)


def _text(limit: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be text")
        value = value.strip()
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return check


_PATTERN = re.compile(r"^/[^\s,]*$")


def _patterns(value: Any) -> Any:
    """Page paths, ``*`` matching anything (``/articles/*``), separated by commas or
    whitespace; kept one per line."""
    if not isinstance(value, str):
        raise ValueError("must be text")
    patterns = value.replace(",", " ").split()
    bad = [p for p in patterns if not _PATTERN.match(p) or len(p) > 200]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a page path such as /articles/*")
    if len(patterns) > 50:
        raise ValueError("at most 50 patterns")
    return "\n".join(patterns)


def _day(value: Any) -> Any:
    if value in ("", None):
        return ""
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ValueError("must be a date such as 2026-12-24") from None


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "position": _choice("bottom-right", "bottom-left", "bottom-center"),
    "theme": _choice("light", "dark", "auto"),
    "accent": _colour,
    "trigger": _choice("delay", "scroll", "exit", "immediate", "inline"),
    "delay": _number(0, 600),
    "scroll": _number(0, 100),
    "dismissDays": _number(0, 3650),
    "nameField": parse_flag,
    "consentCheckbox": parse_flag,
    "privacyUrl": _url,
    "proofOfWork": parse_flag,
    "showOn": _patterns,
    "hideOn": _patterns,
    "afterViews": _number(0, 100),
    "minWidth": _number(0, 4000),
    "startDate": _day,
    "endDate": _day,
    "title": _text(120),
    "text": _text(500),
    "button": _text(40),
    "success": _text(300),
}


BOX_SETTINGS = tuple(_CHECKS)


def validate_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Checked values, or ValueError naming every bad one."""
    clean, problems = check_changes(changes)
    if problems:
        raise ValueError("; ".join(f"{name}: {problem}" for name, problem in problems.items()))
    return clean


def check_changes(changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(checked values, {setting: what is wrong with it}) for every setting given."""
    clean: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, value in changes.items():
        check = _CHECKS.get(name)
        if check is None:
            problems[name] = "unknown setting"
            continue
        try:
            clean[name] = check(value)
        except ValueError as exc:
            problems[name] = str(exc)
    start, end = clean.get("startDate"), clean.get("endDate")
    if start and end and start > end:
        problems["endDate"] = "must not be before startDate"
    return clean, problems


def _luminance(colour: str) -> float:
    digits = colour[1:]
    if len(digits) in (3, 4):
        digits = "".join(ch * 2 for ch in digits[:3])
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2] + 0.05


def _ring(accent: str, background: str) -> str:
    """The accent, if it stands out 3:1 from the box's background as a focus ring must;
    else "" (the box uses its text colour)."""
    a, b = _luminance(accent), _luminance(background)
    return accent if max(a, b) / min(a, b) >= 3 else ""


def setting(mailing_list: MailingList, name: str) -> Any:
    """One setting that is not a text, as `effective` gives it, without building them all
    (the subscribe endpoint needs two on every request)."""
    stored = (mailing_list.widget or {}).get(name)
    return DEFAULTS[name] if stored in ("", None) else stored


def effective(mailing_list: MailingList, language: str | None = None) -> dict[str, Any]:
    """Every setting the widget uses, defaults and language texts filled in."""
    language_texts = texts(language or mailing_list.language)
    stored = mailing_list.widget or {}
    settings: dict[str, Any] = {**DEFAULTS}
    settings.update({k: language_texts[k] for k in TEXT_KEYS})
    settings.update({k: v for k, v in stored.items() if k in _CHECKS and v not in ("", None)})
    settings["consent"] = consent_wording(mailing_list, language)
    settings["ring"] = [_ring(settings["accent"], background) for background in ("#fff", "#1f2937")]
    if stored.get("test"):
        settings["test"] = stored["test"]  # a running A/B test (service.box_tests)
    return settings
