"""Erased addresses stay suppressed: a one-way hash is all that is kept of them."""

from __future__ import annotations

import hashlib

__all__ = ["email_hash"]


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()
