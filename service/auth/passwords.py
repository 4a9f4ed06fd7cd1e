"""Argon2id password hashes, verified off the event loop.

An unknown username costs one verification against a fixed dummy hash, so the time a
sign-in takes does not tell whether the account exists.
"""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["hash_password", "verify_password"]

_HASHER = PasswordHasher()


@cache
def _dummy_hash() -> str:
    return _HASHER.hash("not a password anyone has")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, new hash when the parameters changed since it was made)."""
    try:
        _HASHER.verify(stored or _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if stored is None:
        return False, None
    return True, (_HASHER.hash(password) if _HASHER.check_needs_rehash(stored) else None)


async def verify_password(stored: str | None, password: str) -> tuple[bool, str | None]:
    """Check ``password``; ``stored`` is None for an unknown user (same cost, never true)."""
    return await asyncio.to_thread(_verify, stored, password)
