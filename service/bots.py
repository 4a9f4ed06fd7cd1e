"""Telling form-filling bots from readers without losing a reader.

Two signs, checked on the server for every way in (JSON API, form post, hosted page):

- the honeypot: a field named ``url`` that people never see (and browsers never autofill),
  so never fill. No person produces it: such a signup is answered like any other and
  dropped by the worker (``service.intake``).
- the form stamp: a signed "this form was shown at T" value, handed out with the form (the
  hosted page carries it; the box fetches it with ``GET /api/v1/lists/SLUG/challenge`` when
  it shows). It is good for one signup (``service.intake`` spends it with the signup), for
  as long as a challenge lives. A signup without a good stamp, or sent sooner than
  ``NEWSLETTER_MIN_FILL_TIME`` after it, only *suggests* a bot: a fast reader with browser
  autofill looks the same. So it is never dropped: it must pay a proof of work first
  (``service.challenges``), which the box and the hosted page solve by themselves.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.signing import Signer

__all__ = ["HONEYPOT", "FormStamps", "Stamp", "suspicion", "trapped"]

HONEYPOT = "url"


class FormStamps:
    """Signed "this form was shown at T" values, bound to a list."""

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


def trapped(fields: Mapping[str, Any]) -> bool:
    """The honeypot is filled: no person does that."""
    return bool(fields.get(HONEYPOT))


@dataclass(frozen=True)
class Stamp:
    """A good stamp, to be spent with its signup: kept as used until it would be too old."""

    digest: str
    expires_at: datetime


CLOCK_MARGIN = timedelta(minutes=5)  # as for challenges: clocks of processes differ a little


def suspicion(
    fields: Mapping[str, Any],
    slug: str,
    stamps: FormStamps,
    min_fill_time: float,
    max_age: float,
) -> tuple[str, Stamp | None]:
    """Why this signup must prove itself with a proof of work ("" if it need not), and the
    stamp to spend if it need not."""
    if min_fill_time <= 0:
        return "", None
    stamp = fields.get("form_stamp")
    if not isinstance(stamp, str) or not stamp:
        return "no-stamp", None
    now = time.time()
    age = stamps.age(stamp, slug, now)
    if age is None:
        return "bad-stamp", None
    if age > max_age:
        return "old-stamp", None
    if not age >= min_fill_time:
        return "too-fast", None
    made = datetime.fromtimestamp(now - age, UTC)
    digest = hashlib.sha256(f"stamp|{stamp}".encode()).hexdigest()
    return "", Stamp(digest, made + timedelta(seconds=max_age) + CLOCK_MARGIN)
