"""``newsletter admin ...``: admin accounts and API tokens."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING, Any

from service.auth.roles import LEGACY_SCOPES, ROLES, SCOPES
from service.cli._common import run_with_db
from service.settings import Settings

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["register"]


def _read_password() -> str | None:
    """From a prompt (typed twice) on a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            print("error: the passwords differ", file=sys.stderr)
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from service.audit import CLI
    from service.auth.users import UserExists, create_user

    password = _read_password()
    if password is None:
        return 1

    async def job(db: Database) -> int:
        try:
            await create_user(db, args.username, password, role=args.role, actor=CLI)
        except (ValueError, UserExists) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"created admin {args.username!r} ({args.role}); sign in at {settings.base_url}/admin/"
        )
        return 0

    return run_with_db(settings, job)


def _password(settings: Settings, args: argparse.Namespace) -> int:
    from service.audit import CLI
    from service.auth.users import set_password

    password = _read_password()
    if password is None:
        return 1

    async def job(db: Database) -> int:
        try:
            changed = await set_password(
                db, args.username, password, revoke_tokens=args.revoke_tokens, actor=CLI
            )
        except (ValueError, LookupError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"password of {args.username!r} changed; "
            f"{changed.sessions_ended} signed-in session(s) ended"
        )
        if args.revoke_tokens:
            print(f"{changed.tokens_revoked} API token(s) revoked")
        else:
            print(
                "API tokens are kept: see 'newsletter admin token list', or run this "
                "again with --revoke-tokens",
                file=sys.stderr,
            )
        return 0

    return run_with_db(settings, job)


def _token_create(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from service.audit import CLI
    from service.auth.api_tokens import create_token, expiry_from_days
    from service.models import AdminUser

    async def job(db: Database) -> int:
        username = args.user
        if username is None:
            async with db.read() as session:
                names = list((await session.scalars(select(AdminUser.username))).all())
            if len(names) != 1:
                print(
                    "error: say which admin the token acts for: --user NAME"
                    if names
                    else "error: create an admin first: newsletter admin create NAME",
                    file=sys.stderr,
                )
                return 1
            username = names[0]
        try:
            token = await create_token(
                db,
                username,
                args.name,
                scopes=args.scopes.split(","),
                expires_at=expiry_from_days(args.expires_in_days),
                actor=CLI,
            )
        except (LookupError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(token)
        print(
            f"(token {args.name!r} for {username}, scopes {args.scopes}; "
            "shown only now, store it safely)",
            file=sys.stderr,
        )
        return 0

    return run_with_db(settings, job)


def _token_list(settings: Settings, args: argparse.Namespace) -> int:
    from service.auth.api_tokens import list_tokens, token_scopes
    from service.models import utcnow

    async def job(db: Database) -> int:
        now = utcnow()
        for token, username in await list_tokens(db):
            if token.revoked_at:
                state = f"revoked {token.revoked_at:%Y-%m-%d}"
            elif token.expires_at and token.expires_at <= now:
                state = f"expired {token.expires_at:%Y-%m-%d}"
            elif token.expires_at:
                state = f"active until {token.expires_at:%Y-%m-%d %H:%M}"
            else:
                state = "active"
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            scopes = ",".join(token_scopes(token))
            print(f"{token.id}\t{token.name}\t{username}\t{scopes}\t{state}\tlast used {used}")
        return 0

    return run_with_db(settings, job)


def _token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from service.audit import CLI
    from service.auth.api_tokens import revoke_token

    async def job(db: Database) -> int:
        if await revoke_token(db, args.id, actor=CLI):
            print(f"token {args.id} revoked")
            return 0
        print(f"error: no active token {args.id}", file=sys.stderr)
        return 1

    return run_with_db(settings, job)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from service.auth.users import list_users

    async def job(db: Database) -> int:
        for user in await list_users(db):
            state = f"disabled {user.disabled_at:%Y-%m-%d}" if user.disabled_at else "active"
            last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
            print(f"{user.username}\t{user.role}\t{state}\tlast sign-in {last}")
        return 0

    return run_with_db(settings, job)


def _change(settings: Settings, args: argparse.Namespace) -> int:
    """disable, enable, or role: one change to one admin."""
    from service.audit import CLI
    from service.auth.users import LastOwner, set_disabled, set_role

    async def job(db: Database) -> int:
        try:
            if args.admin_command == "role":
                changed = await set_role(db, args.username, args.role, actor=CLI)
                what = f"now {args.role}"
            else:
                disable = args.admin_command == "disable"
                changed = await set_disabled(db, args.username, disable, actor=CLI)
                what = "disabled: sessions ended, API tokens revoked" if disable else "enabled"
        except (LookupError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except LastOwner as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        print(f"{args.username}: {what}" if changed else f"{args.username}: already so")
        return 0

    return run_with_db(settings, job)


def register(commands: Any) -> None:
    admin = commands.add_parser(
        "admin",
        help="admin accounts and API tokens",
        description="Admin accounts (for /admin/) and API tokens (for /api/v1/admin/).",
    )
    sub = admin.add_subparsers(dest="admin_command", metavar="COMMAND")
    create = sub.add_parser(
        "create",
        help="create an admin account",
        description="Create an admin. The password is asked twice on a "
        "terminal, or read from the first line of stdin.",
    )
    create.add_argument("username")
    create.add_argument(
        "--role",
        choices=sorted(ROLES),
        default="owner",
        help="owner (everything, the default) or editor (no export, erasure, admins, tokens)",
    )
    create.set_defaults(handler=_create)
    listing = sub.add_parser("list", help="show admins", description="Show admins and roles.")
    listing.set_defaults(handler=_list)
    for name, text in (
        ("disable", "disable an admin: sessions end and API tokens are revoked at once"),
        ("enable", "enable a disabled admin again"),
    ):
        change = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        change.add_argument("username")
        change.set_defaults(handler=_change)
    role = sub.add_parser(
        "role",
        help="change an admin's role",
        description="Change an admin's role. The last active owner stays an owner.",
    )
    role.add_argument("username")
    role.add_argument("role", choices=sorted(ROLES))
    role.set_defaults(handler=_change)
    password = sub.add_parser(
        "password",
        help="set an admin's password",
        description="Set a new password (asked, or read from stdin). Every session of "
        "the admin's ends (sign in again); API tokens are kept unless --revoke-tokens.",
    )
    password.add_argument("username")
    password.add_argument(
        "--revoke-tokens",
        action="store_true",
        help="also revoke every API token of the admin's",
    )
    password.set_defaults(handler=_password)
    token = sub.add_parser(
        "token",
        help="API tokens for scripts",
        description="API tokens, sent as 'Authorization: Bearer TOKEN'.",
    )
    token_sub = token.add_subparsers(dest="token_command", metavar="COMMAND")
    token_create = token_sub.add_parser(
        "create",
        help="make a token and print it once",
        description="Make a token and print it (only now).",
    )
    token_create.add_argument("name", help="what the token is for, e.g. 'nightly export'")
    token_create.add_argument("--user", help="the admin it acts for (needed if several)")
    token_create.add_argument(
        "--scopes",
        default=",".join(LEGACY_SCOPES),
        help=f"comma-separated, of {', '.join(SCOPES)} (default: {','.join(LEGACY_SCOPES)})",
    )
    token_create.add_argument(
        "--expires-in-days", type=int, default=None, help="expire after N days (default: never)"
    )
    token_create.set_defaults(handler=_token_create)
    token_list = token_sub.add_parser("list", help="show tokens", description="Show tokens.")
    token_list.set_defaults(handler=_token_list)
    token_revoke = token_sub.add_parser(
        "revoke", help="revoke a token", description="Revoke a token by its id (see list)."
    )
    token_revoke.add_argument("id", type=int)
    token_revoke.set_defaults(handler=_token_revoke)
    admin.set_defaults(handler=None, subparser=admin)
    token.set_defaults(handler=None, subparser=token)
