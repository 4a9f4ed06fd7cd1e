"""One way to sign short values: HMAC-SHA256 under a key kept for one use.

Each use (link tokens, form stamps, proof-of-work challenges) derives its own key from
``NEWSLETTER_SECRET_KEY``, so a value signed for one use never verifies for another.
Signatures are URL-safe base64 without padding, cut to ``size`` bytes of MAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["Signer"]


class Signer:
    def __init__(self, secret_key: str, use: bytes, *, size: int = 32) -> None:
        self._key = hmac.new(secret_key.encode(), use, hashlib.sha256).digest()
        self._size = size

    def sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[: self._size]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def verify(self, body: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(body), signature)
