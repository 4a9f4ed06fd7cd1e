"""Standard Webhooks signatures: ``whsec_`` secrets and the ``webhook-*`` headers.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is the
base64 HMAC-SHA256 of it under the secret's bytes, sent as ``v1,<signature>``. During a
rotation both secrets sign, space-separated, so a receiver holding either one verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

__all__ = ["PREFIX", "headers", "new_secret", "signature"]

PREFIX = "whsec_"


def new_secret() -> str:
    """A new random secret (24 bytes, as the specification suggests at least)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(msg_id: str, timestamp: int, body: bytes, keys: Iterable[str]) -> dict[str, str]:
    """The three headers of one attempt, signed with every secret in ``keys``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(k, msg_id, timestamp, body) for k in keys),
    }
