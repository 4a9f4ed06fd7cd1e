"""Telling form-filling bots from readers at no cost to the readers.

Two signs, checked on the server for every way in (JSON API, form post, hosted page):

- the honeypot: a field named ``url`` that people never see, so never fill;
- the fill time: a form sent back faster than ``NEWSLETTER_MIN_FILL_TIME`` after it was
  shown. The hosted page carries a signed time stamp (``form_stamp``) made when it was
  served, which a bot cannot forge; the widget reports its own ``elapsed_ms``.

A caught bot gets the same answer as anyone, and nothing is sent (``service.intake``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from service.signing import Signer

__all__ = ["FormStamps", "verdict"]

HONEYPOT = "url"


class FormStamps:
    """Signed "this form was served at T" values for the hosted subscribe page."""

    def __init__(self, secret_key: str) -> None:
        self._signer = Signer(secret_key, b"newsletter form stamps v1", size=16)

    def make(self, slug: str, now: float | None = None) -> str:
        body = f"{int((now or time.time()) * 1000)}"
        return f"{body}.{self._signer.sign(f'{slug}|{body}')}"

    def age(self, stamp: str, slug: str, now: float | None = None) -> float | None:
        """Seconds since the stamp was made, or None if it is not one of ours."""
        body, _, signature = stamp.partition(".")
        if not body.isdigit() or len(body) > 16:
            return None
        if not self._signer.verify(f"{slug}|{body}", signature):
            return None
        return (now or time.time()) - int(body) / 1000


def verdict(fields: Mapping[str, Any], slug: str, stamps: FormStamps, min_fill_time: float) -> str:
    """ "" for a reader; "honeypot" or "too-fast" for a bot."""
    if fields.get(HONEYPOT):
        return "honeypot"
    if min_fill_time <= 0:
        return ""
    stamp = fields.get("form_stamp")
    if isinstance(stamp, str) and stamp:
        age = stamps.age(stamp, slug)
        if age is None or age < min_fill_time:
            return "too-fast"
    elapsed = fields.get("elapsed_ms")
    if elapsed is not None and not isinstance(elapsed, bool):
        try:
            seconds = float(elapsed) / 1000
        except (TypeError, ValueError):
            return "too-fast"
        if not seconds >= min_fill_time:  # NaN too
            return "too-fast"
    return ""
