"""Erased addresses stay suppressed: a keyed hash of the inbox is all that is kept of them.

A tombstone is an HMAC of the address's canonical form (`service.limits.canonical_address`:
case, ``+tags`` and Gmail's dots do not count), under the service's signing key with a
purpose of its own, so ``name+news@`` of an erased ``name@`` stays suppressed, and the
table cannot be reversed by hashing a list of known addresses. Tombstones written before
were an unsalted SHA-256 of the exact address; `suppressed` recognises both kinds, so no
erased person comes back. The same key, with another purpose, names an inbox's rate
counters (`AddressKeys.counter`), so they hold no address either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.limits import canonical_address
from service.models import Suppression
from service.signing import Signer

__all__ = ["AddressKeys", "email_hash", "suppressed"]


class AddressKeys:
    """Keyed hashes of an address's inbox, one purpose each."""

    def __init__(self, secret_key: str) -> None:
        self._tombstone = Signer(secret_key, b"newsletter suppressions v1")
        self._counter = Signer(secret_key, b"newsletter inbox counters v1", size=16)

    def tombstone(self, email: str) -> str:
        """What an erasure keeps of ``email``."""
        return self._tombstone.sign(canonical_address(email))

    def counter(self, email: str) -> str:
        """What names the inbox of ``email`` in rate counters."""
        return self._counter.sign(canonical_address(email))


def email_hash(email: str) -> str:
    """The tombstone of ``email`` as it was written before keyed tombstones (legacy)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


async def suppressed(session: AsyncSession, keys: AddressKeys, emails: Iterable[str]) -> set[str]:
    """Which of ``emails`` were erased: the one check every door makes."""
    wanted: dict[str, set[str]] = {}
    for email in emails:
        for digest in (keys.tombstone(email), email_hash(email)):
            wanted.setdefault(digest, set()).add(email)
    found: set[str] = set()
    digests = list(wanted)
    for start in range(0, len(digests), 500):
        rows = await session.scalars(
            select(Suppression.email_hash).where(
                Suppression.email_hash.in_(digests[start : start + 500])
            )
        )
        for digest in rows:
            found |= wanted[digest]
    return found
