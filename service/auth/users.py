"""Admin accounts (roles, disabling) and sign-in, with throttling that holds across
processes. Every change here is written to the audit log in its own transaction."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from zxcvbn import zxcvbn

from service.audit import Actor, entry
from service.auth.passwords import hash_password, verify_password
from service.auth.roles import ROLES
from service.db import Database
from service.errors import Refusal
from service.models import AdminSession, AdminUser, ApiToken, LoginAttempt, utcnow

__all__ = [
    "LastOwner",
    "PasswordChanged",
    "SignIn",
    "Throttled",
    "UserExists",
    "create_user",
    "list_users",
    "set_disabled",
    "set_password",
    "set_role",
    "sign_in",
]

log = logging.getLogger(__name__)

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
WINDOW = timedelta(minutes=15)
# Failures counted per client address, and per account from one address. An account is
# never locked for everyone: a stranger's guesses slow the stranger down, not the owner
# signing in from elsewhere.
MAX_PER_USER_AND_IP = 5
MAX_PER_IP = 20
MIN_PASSWORD = 10
MAX_PASSWORD = 1000  # what the sign-in form reads
JUDGED = 100
MIN_STRENGTH = 3  # zxcvbn's score, 0-4: 3 resists an offline attack on a slow hash


class UserExists(Refusal):
    status = 409


class LastOwner(Refusal):
    status = 409


class Throttled(Refusal):
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed sign-ins; try again in {retry_after} seconds",
            retry_after=retry_after,
        )
        self.seconds = retry_after


@dataclass(frozen=True)
class SignIn:
    user_id: int
    username: str


def loggable(value: str, limit: int = 64) -> str:
    """A name typed by anyone, fit for a log line: no control characters (no forged
    lines, no terminal escapes), and short."""
    cleaned = "".join(c for c in value if unicodedata.category(c)[0] != "C")
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")


def check_password_rules(password: str, username: str = "") -> None:
    """Long enough, and not easy to guess: zxcvbn (Dropbox's estimator) knows common
    passwords, names, words, keyboard walks, repeats, sequences and dates, and the
    account's own name. Only the first characters are judged: past them, the estimate
    takes long and says nothing new."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"a password has at most {MAX_PASSWORD} characters")
    verdict = zxcvbn(password[:JUDGED], user_inputs=[username] if username else [])
    if verdict["score"] < MIN_STRENGTH:
        warning = verdict["feedback"]["warning"] or "it follows a pattern that is easy to guess"
        raise ValueError(
            f"this password is too easy to guess ({warning.rstrip('.')}); "
            "a few unrelated words make a good one"
        )


def check_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


async def create_user(
    db: Database,
    username: str,
    password: str,
    *,
    role: str = "owner",
    actor: Actor | None = None,
) -> AdminUser:
    if not _USERNAME.match(username):
        raise ValueError("a username is 1-64 letters, digits and . _ @ -")
    check_role(role)
    check_password_rules(password, username)
    user = AdminUser(username=username, password_hash=await hash_password(password), role=role)
    try:
        async with db.write() as session:
            session.add(user)
            if actor is not None:
                session.add(entry(actor, "admin.create", username, role=role))
    except IntegrityError:
        raise UserExists(f"an admin named {username!r} already exists") from None
    return user


async def list_users(db: Database) -> list[AdminUser]:
    async with db.read() as session:
        return list((await session.scalars(select(AdminUser).order_by(AdminUser.id))).all())


async def _target(session: AsyncSession, username: str) -> AdminUser:
    """The admin row, and every active owner's locked (PostgreSQL: FOR UPDATE; SQLite's
    write transactions already run one at a time), so two owners demoting each other at
    once cannot leave no owner."""
    await session.execute(
        select(AdminUser.id)
        .where(AdminUser.role == "owner", AdminUser.disabled_at.is_(None))
        .with_for_update()
    )
    user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        raise LookupError(f"there is no admin named {username!r}")
    return user


async def _keep_an_owner(session: AsyncSession, user: AdminUser) -> None:
    if user.role != "owner" or user.disabled_at is not None:
        return
    others = await session.scalar(
        select(func.count())
        .select_from(AdminUser)
        .where(AdminUser.role == "owner", AdminUser.disabled_at.is_(None), AdminUser.id != user.id)
    )
    if not others:
        raise LastOwner(
            f"{user.username} is the last active owner: make another admin an owner first."
        )


async def set_role(db: Database, username: str, role: str, *, actor: Actor | None = None) -> bool:
    """Give ``username`` ``role``; False if it had it. The last active owner stays one."""
    check_role(role)
    async with db.write() as session:
        user = await _target(session, username)
        if user.role == role:
            return False
        if role != "owner":
            await _keep_an_owner(session, user)
        before, user.role = user.role, role
        if actor is not None:
            session.add(entry(actor, "admin.role", username, role=role, was=before))
    return True


async def set_disabled(
    db: Database, username: str, disabled: bool, *, actor: Actor | None = None
) -> bool:
    """Disable (or enable) ``username``; False if it already was. Disabling ends the
    admin's sessions and revokes their tokens in the same transaction: whatever they
    hold stops working at once. The last active owner cannot be disabled."""
    now = utcnow()
    async with db.write() as session:
        user = await _target(session, username)
        if (user.disabled_at is not None) == disabled:
            return False
        if disabled:
            await _keep_an_owner(session, user)
            user.disabled_at = now
            await session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
            await session.execute(
                update(ApiToken)
                .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        else:
            user.disabled_at = None
        if actor is not None:
            session.add(entry(actor, "admin.disable" if disabled else "admin.enable", username))
    return True


@dataclass(frozen=True)
class PasswordChanged:
    sessions_ended: int
    tokens_revoked: int


async def set_password(
    db: Database,
    username: str,
    password: str,
    *,
    revoke_tokens: bool = False,
    actor: Actor | None = None,
) -> PasswordChanged:
    """Set a new password and end every session of the user's, in the same transaction:
    whoever signed in with the old password is out. API tokens are kept unless
    ``revoke_tokens``: the scripts that hold them should not stop because a password
    changed (disable the admin, or revoke tokens one by one, to stop them).
    """
    check_password_rules(password, username)
    new_hash = await hash_password(password)
    async with db.write() as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
        if user is None:
            raise LookupError(f"there is no admin named {username!r}")
        user.password_hash = new_hash
        ended = await session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
        revoked = 0
        if revoke_tokens:
            result = await session.execute(
                update(ApiToken)
                .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            revoked = int(getattr(result, "rowcount", 0) or 0)
        if actor is not None:
            session.add(entry(actor, "admin.password", username, tokens_revoked=revoked))
    return PasswordChanged(int(getattr(ended, "rowcount", 0) or 0), revoked)


async def sign_in(db: Database, username: str, password: str, ip: str | None) -> SignIn | None:
    """The user, or None for a wrong name or password (indistinguishable); may raise Throttled."""
    now = utcnow()
    address = (ip or "-")[:64]
    keys = [f"user-ip:{username.lower()[:100]}|{address}", f"ip:{address}"]
    async with db.read() as session:
        rows = (
            await session.execute(
                select(LoginAttempt.key, func.count(), func.min(LoginAttempt.created_at))
                .where(LoginAttempt.key.in_(keys), LoginAttempt.created_at > now - WINDOW)
                .group_by(LoginAttempt.key)
            )
        ).all()
        user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
    for key, count, oldest in rows:
        limit = MAX_PER_USER_AND_IP if key.startswith("user-ip:") else MAX_PER_IP
        if count >= limit:
            log.warning(
                "admin sign-in refused, too many failures: user %r from %s",
                loggable(username),
                address,
                extra={"username": loggable(username), "client": address},
            )
            raise Throttled(max(1, int((oldest + WINDOW - now).total_seconds())))

    ok, new_hash = await verify_password(user.password_hash if user else None, password)
    if not ok or user is None or user.disabled_at is not None:
        reason = (
            "no such admin" if user is None else "wrong password" if not ok else "admin disabled"
        )
        async with db.write() as session:
            session.add_all([LoginAttempt(key=key, created_at=now) for key in keys])
            await session.execute(
                delete(LoginAttempt).where(LoginAttempt.created_at < now - WINDOW)
            )
            session.add(entry(Actor(loggable(username), "-", ip), "signin.failed", reason=reason))
        log.warning(
            "admin sign-in failed: user %r from %s",
            loggable(username),
            address,
            extra={"username": loggable(username), "client": address},
        )
        return None
    async with db.write() as session:
        await session.execute(delete(LoginAttempt).where(LoginAttempt.key == keys[0]))
        stored = await session.get(AdminUser, user.id)
        assert stored is not None
        stored.last_login_at = now
        if new_hash:
            stored.password_hash = new_hash
        session.add(entry(Actor(user.username, "session", ip), "signin"))
    return SignIn(user.id, user.username)
