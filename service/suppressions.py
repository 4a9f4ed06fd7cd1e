"""Erased addresses stay suppressed: a one-way hash is all that is kept of them."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Suppression

__all__ = ["email_hash", "is_suppressed"]


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


async def is_suppressed(session: AsyncSession, email: str) -> bool:
    found = await session.scalar(
        select(Suppression.email_hash).where(Suppression.email_hash == email_hash(email))
    )
    return found is not None
