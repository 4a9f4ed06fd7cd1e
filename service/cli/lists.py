"""``newsletter lists ...``: create, show and change lists."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from service.cli._common import run_with_db
from service.i18n import LANGUAGES
from service.settings import Settings

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["register"]


def _lists_create(settings: Settings, args: argparse.Namespace) -> int:
    from service.lists import ListExists, create_list

    async def job(db: Database) -> int:
        try:
            created = await create_list(
                db,
                slug=args.slug,
                name=args.name,
                origins=args.origin or [],
                language=args.language,
                double_opt_in=not args.no_double_opt_in,
                consent_text=args.consent_text or "",
            )
        except (ValueError, ListExists) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"created list {created.slug!r} ({created.name})")
        if created.allowed_origins:
            print("allowed origins: " + ", ".join(created.allowed_origins))
        else:
            print("no allowed origins yet: only this service's own pages can sign people up")
        print(f"signups go to: {settings.base_url}/api/v1/lists/{created.slug}/subscriptions")
        return 0

    return run_with_db(settings, job)


def _lists_list(settings: Settings, args: argparse.Namespace) -> int:
    from service.lists import all_lists

    async def job(db: Database) -> int:
        lists = await all_lists(db)
        if not lists:
            print("no lists yet; create one with: newsletter lists create SLUG --name NAME")
            return 0
        for ml in lists:
            origins = ", ".join(ml.allowed_origins) or "-"
            opt_in = "double opt-in" if ml.double_opt_in else "single opt-in"
            print(f"{ml.slug}\t{ml.name}\t{ml.language}\t{opt_in}\t{origins}")
        return 0

    return run_with_db(settings, job)


def _lists_snippet(settings: Settings, args: argparse.Namespace) -> int:
    from service.lists import get_list
    from service.web.assets import fallback, snippet

    async def job(db: Database) -> int:
        mailing_list = await get_list(db, args.slug)
        if mailing_list is None:
            print(f"error: there is no list {args.slug!r}", file=sys.stderr)
            return 1
        print(snippet(settings.base_url, args.slug))
        print(fallback(settings.base_url, args.slug, mailing_list.name, mailing_list.language))
        return 0

    return run_with_db(settings, job)


def _lists_set(settings: Settings, args: argparse.Namespace) -> int:
    changes: dict[str, str] = {}
    for item in args.changes:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        changes[key.strip()] = value
    from service.lists import update_list

    async def job(db: Database) -> int:
        try:
            await update_list(db, args.slug, changes)
        except (ValueError, LookupError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"updated list {args.slug!r}: {', '.join(sorted(changes))}")
        return 0

    return run_with_db(settings, job)


SET_HELP = """KEY=VALUE pairs. List fields: name, origins (comma-separated), language (en, de, fr),
consent_text, double_opt_in (true/false). Box settings: title, text, button, success,
position (bottom-right, bottom-left, bottom-center), theme (light, dark, auto), accent
(#rrggbb), trigger (delay, scroll, exit, immediate, inline), delay (seconds), scroll
(percent), dismissDays, nameField (true/false), consentCheckbox (true/false), privacyUrl,
proofOfWork (true/false: every signup solves a small puzzle first). Targeting: showOn and
hideOn (page paths, * matches anything, e.g. "/articles/*"), afterViews (pages seen in
the visit first), minWidth (pixels), startDate and endDate (UTC days, 2026-12-24).
"""


def register(commands: Any) -> None:
    lists = commands.add_parser(
        "lists",
        help="create, show and change mailing lists; print their embed snippet",
        description="Create, show and change mailing lists, and print the snippet that puts "
        "a list's subscribe box on a page.",
    )
    list_commands = lists.add_subparsers(dest="lists_command", metavar="COMMAND")
    create = list_commands.add_parser(
        "create",
        help="create a list",
        description="Create a mailing list that readers can subscribe to.",
    )
    create.add_argument("slug", help="short name used in URLs and the embed snippet, e.g. daily")
    create.add_argument("--name", required=True, help='name readers see, e.g. "The Daily Brief"')
    create.add_argument(
        "--origin",
        action="append",
        metavar="URL",
        help="a site allowed to embed the signup box, e.g. "
        "https://www.example.com (repeat for several)",
    )
    create.add_argument(
        "--language",
        default="en",
        choices=LANGUAGES,
        help="language of the box and pages (default: en)",
    )
    create.add_argument(
        "--consent-text", help="consent wording shown with the form and recorded with every signup"
    )
    create.add_argument(
        "--no-double-opt-in",
        action="store_true",
        help="subscribe without a confirmation email (not recommended)",
    )
    create.set_defaults(handler=_lists_create)
    show = list_commands.add_parser("list", help="show all lists", description="Show all lists.")
    show.set_defaults(handler=_lists_list)
    snip = list_commands.add_parser(
        "snippet",
        help="print the embed snippet of a list",
        description="Print the one line of HTML that puts the subscribe box on a page, and a "
        "<noscript> link to the hosted signup page for readers without JavaScript.",
    )
    snip.add_argument("slug")
    snip.set_defaults(handler=_lists_snippet)
    change = list_commands.add_parser(
        "set",
        help="change a list and its subscribe box",
        description="Change a list's fields and its subscribe box's copy, look and trigger.",
        epilog=SET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    change.add_argument("slug")
    change.add_argument("changes", nargs="+", metavar="KEY=VALUE")
    change.set_defaults(handler=_lists_set)
    lists.set_defaults(handler=None, subparser=lists)
