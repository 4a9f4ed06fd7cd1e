"""API tokens for scripts. Shown once when made; only a SHA-256 of each is kept.

Tokens are 256 random bits, so a plain hash (no salt, no slow hash) is enough: there is
nothing to guess, and lookups stay a single indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update

from service.auth.sessions import Principal
from service.db import Database
from service.models import AdminUser, ApiToken, utcnow

__all__ = ["PREFIX", "check_token", "create_token", "list_tokens", "revoke_token"]

PREFIX = "nlt_"
TOUCH_EVERY = timedelta(minutes=5)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def create_token(db: Database, username: str, name: str) -> str:
    value = PREFIX + secrets.token_urlsafe(32)
    async with db.write() as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
        if user is None:
            raise LookupError(f"there is no admin named {username!r}")
        session.add(ApiToken(name=name, token_hash=_hash(value), user_id=user.id))
    return value


async def check_token(db: Database, value: str) -> Principal | None:
    if not value.startswith(PREFIX) or len(value) > 100:
        return None
    now = utcnow()
    async with db.read() as session:
        row = (
            await session.execute(
                select(ApiToken, AdminUser.username)
                .join(AdminUser, AdminUser.id == ApiToken.user_id)
                .where(ApiToken.token_hash == _hash(value), ApiToken.revoked_at.is_(None))
            )
        ).first()
    if row is None:
        return None
    token, username = row
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        async with db.write() as session:
            await session.execute(
                update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
            )
    return Principal(token.user_id, username, "token")


async def list_tokens(db: Database) -> list[tuple[ApiToken, str]]:
    async with db.read() as session:
        rows = await session.execute(
            select(ApiToken, AdminUser.username)
            .join(AdminUser, AdminUser.id == ApiToken.user_id)
            .order_by(ApiToken.id)
        )
        return [(token, username) for token, username in rows]


async def revoke_token(db: Database, token_id: int) -> bool:
    async with db.write() as session:
        result = await session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return bool(getattr(result, "rowcount", 0))
