"""``newsletter serve`` and ``newsletter demo``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from service.settings import Settings

__all__ = ["register"]


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from service.app import create_app
    from service.logs import configure_logging
    from service.server import serve, server_stack

    # A line per request: written in batches, not one write each.
    configure_logging(settings.log_level, settings.log_format, batched=True)

    host = args.host or settings.host
    port = args.port or settings.port
    if "NEWSLETTER_BASE_URL" not in os.environ:
        shown = "127.0.0.1" if host in {"0.0.0.0", "::"} else host  # noqa: S104
        settings = settings.replace(base_url=f"http://{shown}:{port}")
    for name in settings.unknown_variables:
        logging.getLogger("service").warning("unknown setting %s is ignored (a typo?)", name)
    if args.migrate:
        settings = settings.replace(migrate_on_start=True)
    # Checked here as well as in the lifespan, to stop with a message, not a traceback.
    problem = asyncio.run(_schema_problem(settings))
    if problem:
        print(f"newsletter: {problem}", file=sys.stderr)
        return 1
    logging.getLogger("service").info(
        "serving on http://%s:%s (public URL %s; event loop %s, HTTP parser %s)",
        host,
        port,
        settings.base_url,
        *server_stack(),
    )
    serve(create_app(settings), host, port)
    return 0


async def _schema_problem(settings: Settings) -> str | None:
    """Migrate if that is on; else why the schema cannot be used (None: it can)."""
    from service.db import Database, SchemaError

    db = Database.from_url(settings.database_url)
    try:
        await db.prepare_schema(migrate=settings.migrates_on_start)
    except SchemaError as exc:
        return str(exc)
    finally:
        await db.dispose()
    return None


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from service.demo import run_demo

    return run_demo(settings, args.port, args.article_port)


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the web service (and, by default, the mail worker)",
        description="Run the HTTP service. With no NEWSLETTER_* settings it uses a SQLite file "
        "in the current folder and keeps mail in the development mail catcher.",
    )
    serve.add_argument("--host", help="address to listen on (default: NEWSLETTER_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default: NEWSLETTER_PORT)")
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="bring the database schema up to date first (as NEWSLETTER_MIGRATE_ON_START=true)",
    )
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser(
        "demo",
        help="try the whole flow: service, mail catcher and a sample article page",
        description="Start the service with the development mail catcher and a fresh database, "
        "a demo list, and a sample article page on another port with the snippet embedded.",
    )
    demo.add_argument("--port", type=int, default=8000, help="service port (default: 8000)")
    demo.add_argument(
        "--article-port",
        type=int,
        default=8001,
        help="port of the sample article page (default: 8001)",
    )
    demo.set_defaults(handler=_demo)
