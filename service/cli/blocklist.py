"""``newsletter blocklist ...``: block addresses and domains, show and remove entries."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from service.cli._common import run_with_db
from service.settings import Settings

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["register"]


def _add(settings: Settings, args: Any) -> int:
    from service import blocklist

    async def job(db: Database) -> int:
        try:
            added = await blocklist.add(db, args.entries, admin=args.admin, note=args.note or "")
        except ValueError as exc:
            print(f"error: {exc}; nothing was added", file=sys.stderr)
            return 1
        for entry in added:
            print(f"blocked {entry.kind} {entry.value}")
        if len(added) < len(args.entries):
            print(f"{len(args.entries) - len(added)} already blocked")
        return 0

    return run_with_db(settings, job)


def _list(settings: Settings, args: Any) -> int:
    from service import blocklist

    async def job(db: Database) -> int:
        found = await blocklist.entries(db, args.contains or "")
        for e in found:
            when = e.created_at.strftime("%Y-%m-%d %H:%M")
            print(f"{e.id}\t{e.kind}\t{e.value}\t{when}\t{e.created_by}\t{e.note}")
        if not found:
            print("the blocklist is empty" if not args.contains else "no entry matches")
        return 0

    return run_with_db(settings, job)


def _remove(settings: Settings, args: Any) -> int:
    from service import blocklist

    async def job(db: Database) -> int:
        try:
            _, value = blocklist.parse(args.entry)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        matching = [e for e in await blocklist.entries(db, value) if e.value == value]
        if not matching:
            print(f"{value} is not on the blocklist")
            return 0  # removing twice is harmless
        await blocklist.remove(db, matching[0].id)
        print(f"removed {matching[0].kind} {value}")
        return 0

    return run_with_db(settings, job)


def register(commands: Any) -> None:
    group = commands.add_parser(
        "blocklist",
        help="block addresses and domains from signups and imports",
        description="Addresses and domains that no signup, import or admin adds. A domain "
        "blocks its subdomains; an address blocks its other spellings (case, +tags, Gmail's "
        "dots). Blocked signups are answered like any other and dropped without an email.",
    )
    sub = group.add_subparsers(dest="blocklist_command", metavar="COMMAND")
    add = sub.add_parser("add", help="block addresses or domains", description="Block entries.")
    add.add_argument("entries", nargs="+", metavar="ENTRY", help="name@example.com or example.com")
    add.add_argument("--note", help="why, kept with the entry")
    add.add_argument(
        "--admin", default=os.environ.get("USER", "cli"), help="who blocks (default: $USER)"
    )
    add.set_defaults(handler=_add)
    show = sub.add_parser("list", help="show the blocklist", description="Show the blocklist.")
    show.add_argument("--contains", metavar="TEXT", help="only entries containing TEXT")
    show.set_defaults(handler=_list)
    rm = sub.add_parser("remove", help="unblock an entry", description="Remove an entry.")
    rm.add_argument("entry", metavar="ENTRY")
    rm.set_defaults(handler=_remove)
    group.set_defaults(handler=None, subparser=group)
