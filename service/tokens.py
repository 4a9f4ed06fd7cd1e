"""Signed link tokens: bound to one subscription and one purpose, optionally expiring.

A token is ``<subscription id>.<nonce>.<expiry>.<signature>``, all URL-safe. The signature
is an HMAC-SHA256 (256 bits) over the purpose and the other fields, with a key derived from
``NEWSLETTER_SECRET_KEY``; the purpose is signed but not written, so a token made for one
purpose never verifies for another. Nothing is stored per token: the confirmation nonce
lives on the subscription and is replaced on confirm, which is what makes a confirmation
link work once. Tokens are deterministic, so a retried email carries the same link.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from service.signing import Signer

__all__ = ["InvalidToken", "Purpose", "TokenClaims", "TokenSigner"]

_SHAPE = re.compile(
    r"^([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{1,32})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$"
)


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"


class InvalidToken(Exception):
    """Malformed, tampered, expired or for another purpose; callers treat all the same."""


@dataclass(frozen=True)
class TokenClaims:
    subscription_id: int
    nonce: str
    expires_at: int  # unix seconds; 0 means never


class TokenSigner:
    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 32:
            raise ValueError("secret key must be at least 32 characters")
        self._signer = Signer(secret_key, b"newsletter link tokens v1")

    def make(self, purpose: Purpose, subscription_id: int, nonce: str, expires_at: int = 0) -> str:
        body = f"{subscription_id}.{nonce}.{expires_at}"
        if not _SHAPE.match(f"{body}.{'A' * 43}"):
            raise ValueError("subscription id, nonce or expiry out of range")
        return f"{body}.{self._signer.sign(f'{purpose.value}|{body}')}"

    def read(self, token: str, purpose: Purpose, *, now: float) -> TokenClaims:
        match = _SHAPE.match(token)
        if not match:
            raise InvalidToken("malformed")
        sub_id, nonce, expires, signature = match.groups()
        if not self._signer.verify(f"{purpose.value}|{sub_id}.{nonce}.{expires}", signature):
            raise InvalidToken("bad signature")
        expires_at = int(expires)
        if expires_at and now >= expires_at:
            raise InvalidToken("expired")
        return TokenClaims(int(sub_id), nonce, expires_at)
