"""``newsletter welcome ...``: show and set a list's welcome email."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli._common import run_with_db
from service.settings import Settings

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["register"]


def _show(settings: Settings, args: argparse.Namespace) -> int:
    from service import welcome
    from service.lists import get_list

    async def job(db: Database) -> int:
        mailing_list = await get_list(db, args.slug)
        if mailing_list is None:
            print(f"error: there is no list {args.slug!r}", file=sys.stderr)
            return 1
        state = "on" if welcome.enabled(mailing_list) else "off"
        print(f"welcome email for {mailing_list.slug!r}: {state}")
        custom = welcome.custom_text(mailing_list)
        if custom is None:
            print(f"text: the built-in welcome in {mailing_list.language}")
        else:
            print(f"subject: {custom[0]}\n\n{custom[1]}")
        return 0

    return run_with_db(settings, job)


def _set(settings: Settings, args: argparse.Namespace) -> int:
    try:
        text = Path(args.body_file).read_text(encoding="utf-8") if args.body_file else None
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.body_file}: {exc}", file=sys.stderr)
        return 1

    from service import welcome
    from service.lists import get_list

    async def job(db: Database) -> int:
        mailing_list = await get_list(db, args.slug)
        if mailing_list is None:
            print(f"error: there is no list {args.slug!r}", file=sys.stderr)
            return 1
        subject, body = welcome.custom_text(mailing_list) or ("", "")
        if args.subject is not None:
            subject = args.subject
        if text is not None:
            body = text
        if args.builtin:
            subject = body = ""
        on = welcome.enabled(mailing_list) if args.on is None else args.on
        try:
            stored = welcome.validate(
                mailing_list.welcome, mailing_list.language, on=on, subject=subject, body=body
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        await welcome.save(db, mailing_list.slug, stored)
        print(f"welcome email for {mailing_list.slug!r}: {'on' if on else 'off'}")
        return 0

    return run_with_db(settings, job)


def register(commands: Any) -> None:
    group = commands.add_parser(
        "welcome",
        help="a list's welcome email, sent once after a new subscriber confirms",
        description="Show or set a list's welcome email: on or off, and its subject and text "
        "in the list's language ({name} and {list} are filled in).",
    )
    sub = group.add_subparsers(dest="welcome_command", metavar="COMMAND")
    show = sub.add_parser("show", help="show a list's welcome email")
    show.add_argument("slug")
    show.set_defaults(handler=_show)
    change = sub.add_parser("set", help="turn it on or off, change its text")
    change.add_argument("slug")
    switch = change.add_mutually_exclusive_group()
    switch.add_argument("--on", dest="on", action="store_true", default=None)
    switch.add_argument("--off", dest="on", action="store_false")
    change.add_argument("--subject", help="the subject line")
    change.add_argument("--body-file", metavar="FILE", help="the text, from a UTF-8 file")
    change.add_argument(
        "--builtin", action="store_true", help="send the built-in welcome instead of a text"
    )
    change.set_defaults(handler=_set)
    group.set_defaults(handler=None, subparser=group)
