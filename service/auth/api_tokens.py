"""API tokens for scripts. Shown once when made; only a SHA-256 of each is kept.

Tokens are 256 random bits, so a plain hash (no salt, no slow hash) is enough: there is
nothing to guess, and lookups stay a single indexed query. Each token has scopes (what
it may do, within its admin's role) and may expire.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update

from service.audit import Actor, entry
from service.auth.roles import LEGACY_SCOPES, parse_scopes, role_scopes
from service.auth.sessions import Principal
from service.db import Database
from service.models import AdminUser, ApiToken, utcnow

__all__ = [
    "MAX_EXPIRY_DAYS",
    "PREFIX",
    "TokenExpired",
    "check_token",
    "create_token",
    "expiry_from_days",
    "issue_token",
    "list_tokens",
    "revoke_token",
    "token_scopes",
]

PREFIX = "nlt_"
TOUCH_EVERY = timedelta(minutes=5)
MAX_EXPIRY_DAYS = 3650


class TokenExpired(Exception):
    """A token that was valid until ``expired_at``: the caller is told so."""

    def __init__(self, expired_at: datetime) -> None:
        super().__init__(f"This API token expired at {expired_at:%Y-%m-%d %H:%M} UTC.")
        self.expired_at = expired_at


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def token_scopes(token: ApiToken) -> tuple[str, ...]:
    return tuple(s for s in token.scopes.split(",") if s)


def expiry_from_days(days: object) -> datetime | None:
    """None (never) for None or ""; else a whole number of days from now, 1 to 3650."""
    if days is None or days == "":
        return None
    if isinstance(days, bool) or not isinstance(days, int | str):
        raise ValueError("expires_in_days must be a whole number of days, or null for never")
    try:
        count = int(days)
    except ValueError:
        raise ValueError(
            "expires_in_days must be a whole number of days, or empty for never"
        ) from None
    if not 1 <= count <= MAX_EXPIRY_DAYS:
        raise ValueError(f"expires_in_days must be between 1 and {MAX_EXPIRY_DAYS}")
    return utcnow() + timedelta(days=count)


async def create_token(
    db: Database,
    username: str,
    name: str,
    *,
    scopes: Sequence[object] = LEGACY_SCOPES,
    expires_at: datetime | None = None,
    actor: Actor | None = None,
) -> str:
    """A new token of ``username``'s, to be shown once (see ``issue_token``)."""
    value, _ = await issue_token(
        db, username, name, scopes=scopes, expires_at=expires_at, actor=actor
    )
    return value


async def issue_token(
    db: Database,
    username: str,
    name: str,
    *,
    scopes: Sequence[object] = LEGACY_SCOPES,
    expires_at: datetime | None = None,
    actor: Actor | None = None,
) -> tuple[str, ApiToken]:
    """A new token of ``username``'s and its row. ValueError for a bad name or scope,
    LookupError for an unknown or disabled admin; ``actor`` is recorded in the audit log."""
    chosen = parse_scopes(scopes)
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a token's name (what it is for) is 1-100 characters")
    value = PREFIX + secrets.token_urlsafe(32)
    async with db.write() as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
        if user is None or user.disabled_at is not None:
            raise LookupError(f"there is no active admin named {username!r}")
        token = ApiToken(
            name=name,
            token_hash=_hash(value),
            user_id=user.id,
            scopes=",".join(chosen),
            expires_at=expires_at,
        )
        session.add(token)
        await session.flush()
        if actor is not None:
            session.add(
                entry(
                    actor,
                    "token.create",
                    f"token {token.id} ({name})",
                    user=username,
                    scopes=list(chosen),
                    expires_at=expires_at.isoformat() if expires_at else None,
                )
            )
    return value, token


async def check_token(db: Database, value: str) -> Principal | None:
    """Whom the token acts for and with which scopes; None if it is not a live token of
    an active admin; TokenExpired if it was one until its expiry."""
    if not value.startswith(PREFIX) or len(value) > 100:
        return None
    now = utcnow()
    async with db.read() as session:
        row = (
            await session.execute(
                select(ApiToken, AdminUser.username, AdminUser.role)
                .join(AdminUser, AdminUser.id == ApiToken.user_id)
                .where(
                    ApiToken.token_hash == _hash(value),
                    ApiToken.revoked_at.is_(None),
                    AdminUser.disabled_at.is_(None),
                )
            )
        ).first()
    if row is None:
        return None
    token, username, role = row
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenExpired(token.expires_at)
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        async with db.write() as session:
            await session.execute(
                update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
            )
    return Principal(
        token.user_id,
        username,
        "token",
        role=role,
        scopes=frozenset(token_scopes(token)) & role_scopes(role),
        token_id=token.id,
    )


async def list_tokens(db: Database) -> list[tuple[ApiToken, str]]:
    async with db.read() as session:
        rows = await session.execute(
            select(ApiToken, AdminUser.username)
            .join(AdminUser, AdminUser.id == ApiToken.user_id)
            .order_by(ApiToken.id)
        )
        return [(token, username) for token, username in rows]


async def revoke_token(db: Database, token_id: int, *, actor: Actor | None = None) -> bool:
    async with db.write() as session:
        result = await session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        done = bool(getattr(result, "rowcount", 0))
        if done and actor is not None:
            session.add(entry(actor, "token.revoke", f"token {token_id}"))
    return done
