"""Server-side admin sessions: the cookie holds a random id, the database its hash.

A session ends at its absolute expiry, or after idle time without a request; deleting
the row (sign-out, revocation by its admin or an owner, the admin disabled) ends it at
once, in every process.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from service.audit import Actor, entry
from service.auth.roles import SCOPES, role_scopes
from service.db import Database
from service.models import AdminSession, AdminUser, utcnow

__all__ = [
    "Principal",
    "SessionInfo",
    "end_session",
    "find_session",
    "list_sessions",
    "revoke_session",
    "session_hash",
    "start_session",
]

TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """Who is acting on the admin side, how they proved it, and what they may do."""

    user_id: int
    username: str
    via: str  # "session", "token" or "cli"
    role: str = "owner"
    scopes: frozenset[str] = field(default=frozenset(SCOPES))
    client: str | None = None  # the address the request came from
    session_id: str | None = None  # the session's id hash, for "this session"
    token_id: int | None = None

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.via, self.client)


@dataclass(frozen=True)
class SessionInfo:
    id: str  # the hash of the cookie: it names the session, it cannot sign in
    username: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip_address: str | None
    user_agent: str | None


def session_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def start_session(
    db: Database,
    user_id: int,
    lifetime: float,
    *,
    ip_address: str | None = None,
    user_agent: str | None = None,
) -> str:
    value = secrets.token_urlsafe(32)
    now = utcnow()
    async with db.write() as session:
        session.add(
            AdminSession(
                id_hash=session_hash(value),
                user_id=user_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=lifetime),
                ip_address=(ip_address or None) and ip_address[:64],
                user_agent=(user_agent or None) and user_agent[:256],
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
                select(AdminSession, AdminUser.username, AdminUser.role)
                .join(AdminUser, AdminUser.id == AdminSession.user_id)
                .where(AdminSession.id_hash == session_hash(value), AdminUser.disabled_at.is_(None))
            )
        ).first()
    if row is None:
        return None
    found, username, role = row
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
    return Principal(
        found.user_id,
        username,
        "session",
        role=role,
        scopes=role_scopes(role),
        session_id=found.id_hash,
    )


async def end_session(db: Database, value: str) -> None:
    async with db.write() as session:
        await session.execute(
            delete(AdminSession).where(AdminSession.id_hash == session_hash(value))
        )


async def list_sessions(db: Database, user_id: int | None = None) -> Sequence[SessionInfo]:
    """Live sessions, newest first: one admin's, or everyone's (``user_id`` None)."""
    query = (
        select(AdminSession, AdminUser.username)
        .join(AdminUser, AdminUser.id == AdminSession.user_id)
        .where(AdminSession.expires_at > utcnow())
        .order_by(AdminSession.created_at.desc())
    )
    if user_id is not None:
        query = query.where(AdminSession.user_id == user_id)
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [
        SessionInfo(
            s.id_hash, name, s.created_at, s.last_seen_at, s.expires_at, s.ip_address, s.user_agent
        )
        for s, name in rows
    ]


async def revoke_session(
    db: Database, session_id: str, *, user_id: int | None, actor: Actor | None = None
) -> str | None:
    """End the session named by its id hash; only ``user_id``'s unless None (an owner).
    The name of the admin whose session it was, or None when there is no such session."""
    if len(session_id) != 64:
        return None
    async with db.write() as session:
        query = (
            select(AdminUser.username)
            .join(AdminSession, AdminSession.user_id == AdminUser.id)
            .where(AdminSession.id_hash == session_id)
        )
        if user_id is not None:
            query = query.where(AdminSession.user_id == user_id)
        username = await session.scalar(query)
        if username is not None:
            await session.execute(delete(AdminSession).where(AdminSession.id_hash == session_id))
            if actor is not None:
                session.add(entry(actor, "session.revoke", f"a session of {username}"))
    return username
