"""``newsletter webhooks ...``: add, show, test, pause, resume, rotate and remove webhook
endpoints; show and redeliver their deliveries."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from service.cli._common import run_with_db
from service.settings import Settings
from service.webhooks.types import EVENT_TYPES

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["register"]


def _add(settings: Settings, args: argparse.Namespace) -> int:
    from service.webhooks import endpoints
    from service.webhooks.targets import UnsafeTarget

    async def job(db: Database) -> int:
        try:
            added = await endpoints.add(
                db,
                args.url,
                event_types=args.event,
                list_slugs=args.list,
                description=args.description or "",
                allow_private=settings.webhook_allow_private,
            )
        except (ValueError, UnsafeTarget) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        e = added.endpoint
        print(f"added endpoint {e.id}: {e.url}")
        print(f"events: {', '.join(e.events)}; lists: {', '.join(e.lists) or 'all'}")
        print(f"signing secret (shown once, keep it for the receiver): {added.secret}")
        return 0

    return run_with_db(settings, job)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from service.webhooks import endpoints

    async def job(db: Database) -> int:
        found = await endpoints.list_endpoints(db)
        if not found:
            print("no webhook endpoints; add one with: newsletter webhooks add URL")
        for e in found:
            lists = ",".join(e.lists) or "all lists"
            print(
                f"{e.id}\t{e.status}\t{e.url}\t{','.join(e.events)}\t{lists}\t"
                f"waiting {e.queued}, delivered {e.delivered}, failed {e.failed}"
            )
            if e.status_reason:
                print(f"\t{e.status_reason}")
        return 0

    return run_with_db(settings, job)


def _deliveries(settings: Settings, args: argparse.Namespace) -> int:
    from service.webhooks import endpoints

    async def job(db: Database) -> int:
        if await endpoints.get(db, args.id) is None:
            print(f"error: there is no webhook endpoint {args.id}", file=sys.stderr)
            return 1
        for d in await endpoints.deliveries(db, args.id, limit=args.limit):
            answer = f"HTTP {d.response_status}" if d.response_status else (d.response_body or "")
            print(
                f"{d.id}\t{d.created_at[:19]}\t{d.type}\t{d.msg_id}\t{d.status}\t"
                f"{d.attempts} attempt(s)\t{answer[:120]}"
            )
        return 0

    return run_with_db(settings, job)


def _action(settings: Settings, args: argparse.Namespace) -> int:
    from service.webhooks import endpoints

    async def job(db: Database) -> int:
        action = args.webhooks_command
        done: object
        if action == "rotate":
            done = await endpoints.rotate(db, args.id)
            if done:
                print(f"new signing secret (shown once): {done}")
                print("the previous secret also signs for the next 24 hours")
        elif action == "test":
            done = await endpoints.send_test(db, args.id)
            if done:
                print(f"test event queued (delivery {done}); a worker sends it")
        elif action == "redeliver":
            done = await endpoints.redeliver(db, args.id, args.delivery)
            if done:
                print(f"delivery {args.delivery} queued again, with the same webhook-id")
        elif action == "remove":
            done = await endpoints.remove(db, args.id)
            if done:
                print(f"removed endpoint {args.id}")
        else:
            done = await endpoints.set_paused(db, args.id, action == "pause", "(command line)")
            if done:
                print(f"endpoint {args.id} {action}d")
        if not done:
            print(f"error: there is no such endpoint or delivery ({args.id})", file=sys.stderr)
            return 1
        return 0

    return run_with_db(settings, job)


EVENTS_HELP = "Event types: " + "; ".join(f"{k}: {v}" for k, v in EVENT_TYPES.items())


def register(commands: Any) -> None:
    hooks = commands.add_parser(
        "webhooks",
        help="signed webhooks: add endpoints, test, pause, rotate secrets, see deliveries",
        description="Webhook endpoints receive a signed POST (Standard Webhooks 1.0) for "
        "each event they take.",
        epilog=EVENTS_HELP,
    )
    sub = hooks.add_subparsers(dest="webhooks_command", metavar="COMMAND")
    add = sub.add_parser("add", help="add an endpoint; prints its secret once")
    add.add_argument("url", help="https:// address that receives the events")
    add.add_argument(
        "--event",
        action="append",
        choices=list(EVENT_TYPES),
        help="an event type to send (repeat; default: all but subscription.pending)",
    )
    add.add_argument("--list", action="append", metavar="SLUG", help="only this list (repeat)")
    add.add_argument("--description", help="a note for the admins")
    add.set_defaults(handler=_add)
    show = sub.add_parser("list", help="show the endpoints and their state")
    show.set_defaults(handler=_list)
    deliveries = sub.add_parser("deliveries", help="show an endpoint's latest deliveries")
    deliveries.add_argument("id", type=int)
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.set_defaults(handler=_deliveries)
    for name, text in (
        ("test", "queue a test event for an endpoint"),
        ("pause", "pause an endpoint: its events wait"),
        ("resume", "resume a paused or disabled endpoint"),
        ("rotate", "give an endpoint a new secret (the old one signs too for a day)"),
        ("remove", "remove an endpoint and its deliveries"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("id", type=int)
        command.set_defaults(handler=_action)
    again = sub.add_parser("redeliver", help="send a delivery again, with the same webhook-id")
    again.add_argument("id", type=int, help="the endpoint")
    again.add_argument("delivery", type=int, help="the delivery")
    again.set_defaults(handler=_action)
    hooks.set_defaults(handler=None, subparser=hooks)
