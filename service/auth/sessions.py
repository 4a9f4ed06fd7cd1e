"""Server-side admin sessions: the cookie holds a random id, the database its hash.

A session ends at its absolute expiry, or after idle time without a request; deleting
the row (sign-out, or revocation by an operator) ends it at once, in every process.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update

from service.db import Database
from service.models import AdminSession, AdminUser, utcnow

__all__ = ["Principal", "end_session", "find_session", "start_session"]

TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """Who is acting on the admin side, and how they proved it."""

    user_id: int
    username: str
    via: str  # "session" or "token"


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def start_session(db: Database, user_id: int, lifetime: float) -> str:
    value = secrets.token_urlsafe(32)
    now = utcnow()
    async with db.write() as session:
        session.add(
            AdminSession(
                id_hash=_hash(value),
                user_id=user_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=lifetime),
            )
        )
        await session.execute(delete(AdminSession).where(AdminSession.expires_at < now))
    return value


async def find_session(db: Database, value: str, idle_timeout: float) -> Principal | None:
    if not value or len(value) > 100:
        return None
    now = utcnow()
    async with db.read() as session:
        row = (
            await session.execute(
                select(AdminSession, AdminUser.username)
                .join(AdminUser, AdminUser.id == AdminSession.user_id)
                .where(AdminSession.id_hash == _hash(value))
            )
        ).first()
    if row is None:
        return None
    found, username = row
    if found.expires_at <= now or now - found.last_seen_at > timedelta(seconds=idle_timeout):
        await end_session(db, value)
        return None
    if now - found.last_seen_at > TOUCH_EVERY:
        async with db.write() as session:
            await session.execute(
                update(AdminSession)
                .where(AdminSession.id_hash == found.id_hash)
                .values(last_seen_at=now)
            )
    return Principal(found.user_id, username, "session")


async def end_session(db: Database, value: str) -> None:
    async with db.write() as session:
        await session.execute(delete(AdminSession).where(AdminSession.id_hash == _hash(value)))
