"""The ``newsletter`` command: one module per group of subcommands.

A new group is a module with a ``register(commands)`` function, added to ``COMMANDS``.
Its top-level imports stay light (see ``service.cli._common``): what a command needs is
imported when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.cli import admin, blocklist, data, lists, migrate, serve, worker
from service.logs import configure_logging
from service.settings import Settings, SettingsError

__all__ = ["build_parser", "main"]

COMMANDS = (serve, migrate, worker, lists, admin, data, blocklist)

DESCRIPTION = """\
Self-hosted newsletter signups: an embeddable subscribe box, double opt-in emails,
one-click unsubscribe. Configure with NEWSLETTER_* environment variables (see
docs/operations.md).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsletter",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "subparser", None) or parser).print_help()
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"newsletter: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        result: int = handler(settings, args)
    except KeyboardInterrupt:  # Ctrl+C: the server has stopped cleanly; no traceback
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
