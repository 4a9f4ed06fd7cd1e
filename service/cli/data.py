"""``newsletter export`` and ``newsletter import``: subscribers out to a file and back in."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from service.cli._common import run_with_db
from service.settings import Settings
from service.transfer.formats import FORMATS, STATUSES

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["Progress", "register"]


class Progress:
    """Progress on stderr: a bar redrawn in place on a terminal; elsewhere (a log, a pipe),
    with ``lines``, a plain line now and then (every ``LINE_EVERY`` seconds) and at the end.
    """

    LINE_EVERY = 2.0

    def __init__(
        self,
        label: str,
        total: int,
        unit: str,
        stream: IO[str] | None = None,
        *,
        lines: bool = False,
    ) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.enabled = self.terminal or lines
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self.start = time.monotonic()
        self.drawn = 0.0 if self.terminal else self.start

    def advance(self, amount: int) -> None:
        self.done += amount
        self.show()

    def update(self, done: int) -> None:
        self.done = done
        self.show()

    def show(self, *, force: bool = False) -> None:
        now = time.monotonic()
        every = 0.1 if self.terminal else self.LINE_EVERY
        if not self.enabled or (not force and now - self.drawn < every):
            return
        self.drawn = now
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        rate = self.done / max(now - self.start, 1e-6)
        counts = f"{self.done:,}/{self.total:,} {self.unit} ({rate:,.0f}/s)"
        if self.terminal:
            width = 30
            bar = "#" * int(fraction * width)
            self.stream.write(f"\r{self.label} [{bar:<{width}}] {fraction:4.0%} {counts} ")
        else:
            self.stream.write(f"{self.label}: {fraction:.0%} {counts}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.show(force=True)
            if self.terminal:
                self.stream.write("\n")
            self.stream.flush()


def _day(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2025-01-31") from None


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from service.lists import get_list
    from service.transfer.exports import ExportQuery, check_format, count_rows, export_chunks

    statuses = {s.strip() for value in args.status or ["confirmed"] for s in value.split(",")}
    if "all" in statuses:
        statuses = set(STATUSES)
    try:
        query = ExportQuery(
            list_slug=args.list,
            statuses=frozenset(statuses),
            since=args.since,
            until=args.until + timedelta(days=1) if args.until else None,
        )
        check_format(query, args.format)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def job(db: Database) -> int:
        if args.list is not None and await get_list(db, args.list) is None:
            print(f"error: there is no list {args.list!r}", file=sys.stderr)
            return 1
        progress = Progress("exporting", 0, "rows")
        if progress.enabled:
            progress.total = await count_rows(db, query)
        with _output(args.output) as out:
            async for chunk in export_chunks(
                db, query, args.format, bom=args.bom, on_rows=progress.advance
            ):
                out.write(chunk)
        progress.close()
        where = args.output or "standard output"
        print(f"exported {progress.done:,} rows to {where}", file=sys.stderr)
        return 0

    return run_with_db(settings, job)


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as out:
            yield out
        os.replace(partial, target)  # a finished file or none, never half of one
    finally:
        partial.unlink(missing_ok=True)


def _import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()  # read and checked whole before anything is written
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    from service.lists import get_list
    from service.transfer.imports import ImportFileError, ImportOptions, import_rows

    try:
        options = ImportOptions(
            confirmed=args.confirmed,
            admin=args.admin,
            reason=args.reason or "",
            source=Path(args.file).name,
            dry_run=args.dry_run,
            update_existing=args.update_existing,
            confirmation_cap=settings.rate_limit_confirmations,
        )
    except ValueError as exc:
        print(f"error: {exc} Use --reason TEXT with --confirmed.", file=sys.stderr)
        return 2

    async def job(db: Database) -> int:
        from service.emails import Emails
        from service.keys import signing_key
        from service.mail import EmailRenderer
        from service.suppressions import AddressKeys
        from service.templating import make_environment
        from service.tokens import TokenSigner

        mailing_list = await get_list(db, args.list)
        if mailing_list is None:
            print(f"error: there is no list {args.list!r}", file=sys.stderr)
            return 1
        key = await signing_key(settings, db)
        signer = TokenSigner(key)
        emails = Emails(settings, signer, EmailRenderer(make_environment()))
        progress = Progress("importing", 0, "rows", lines=True)

        def advance(done: int, total: int) -> None:
            progress.total = total
            progress.update(done)

        try:
            report = await import_rows(
                db,
                emails,
                mailing_list,
                data,
                options,
                addresses=AddressKeys(key),
                on_batch=advance,
            )
        except ImportFileError as exc:
            progress.close()
            print(f"error: {exc}", file=sys.stderr)
            return 1
        progress.close()
        print(report.summary())
        if report.confirmation_sent or report.confirmation_waiting:
            print(
                "The confirmation emails are queued; the service's worker sends them "
                "(newsletter serve, or newsletter worker)"
                + (", as the confirmation cap allows." if report.confirmation_waiting else ".")
            )
        return 1 if report.errors else 0

    return run_with_db(settings, job)


EXPORT_HELP = """\
Columns (csv, ndjson): email, name, list, status, subscribed_at, confirmed_at,
unsubscribed_at, consent_source, attributes, then the consent evidence of the latest
signup and confirmation: signup_ip, signup_user_agent, signup_wording, confirm_ip,
confirm_user_agent, confirm_wording; one row per subscriber and list. mailchimp: Email
Address, First Name, Last Name, TAGS, OPTIN_TIME, OPTIN_IP, CONFIRM_TIME, CONFIRM_IP,
UNSUB_TIME, one status per file (Mailchimp imports one at a time). listmonk: email, name,
attributes, one list and one status per file (its import takes both from whoever
imports: subscribe or blocklist). attributes is a JSON object ({} when there are none).
In csv, cells a spreadsheet would run as a formula (starting with = + - @, a tab or a
carriage return) get a leading '; the mailchimp and listmonk layouts are written as they
are, for those tools.
"""

IMPORT_HELP = """\
FILE is a CSV file with a header row: this service's export, a Mailchimp export (Email
Address, First Name, Last Name, ...) or a listmonk export (email, name, attributes);
comma, semicolon or tab separated; UTF-8, UTF-16 with a BOM or Windows-1252. The whole
file is checked before anything is written: a file that cannot be read writes nothing.
Addresses already on the list are left as they are, except that an opt-out in the file
(unsubscribed, cleaned, blocklisted) unsubscribes them; erased addresses stay
suppressed; running the same import again changes nothing. With --update-existing, the
names and attributes of people already here are updated from the file (a name given
replaces theirs; attributes are merged, the file's winning), never their subscriptions.
Confirmation emails follow the service-wide cap (NEWSLETTER_RATE_LIMIT_CONFIRMATIONS),
shared with signups: those it has room for are sent now, the rest wait in the outbox for
the worker to send as the cap allows. Invalid rows are listed with their line numbers;
the exit status is 1 if there were any.
"""


def register(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export subscribers as CSV or NDJSON",
        description="Export the subscribers of a list, or of every list, as CSV or NDJSON.",
        epilog=EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--list", metavar="SLUG", help="the list to export (default: every list)")
    export.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="confirmed (default), pending, unsubscribed, failed or all; repeat or "
        "separate with commas for several",
    )
    export.add_argument(
        "--since", type=_day, metavar="YYYY-MM-DD", help="subscribed on or after this day (UTC)"
    )
    export.add_argument(
        "--until", type=_day, metavar="YYYY-MM-DD", help="subscribed on or before this day (UTC)"
    )
    export.add_argument(
        "--format",
        choices=FORMATS,
        default="csv",
        help="csv (default), ndjson, mailchimp or listmonk",
    )
    export.add_argument(
        "--bom", action="store_true", help="start a CSV file with a byte-order mark (Excel)"
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: standard output)"
    )
    export.set_defaults(handler=_export)

    imp = commands.add_parser(
        "import",
        help="import subscribers from a CSV file",
        description="Import subscribers into a list from a CSV file.",
        epilog=IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("--list", metavar="SLUG", required=True, help="the list to import into")
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument(
        "--confirmed",
        action="store_true",
        help="subscribe new addresses now, without a confirmation email: you state they "
        "consented elsewhere (needs --reason). Default: send each a confirmation email",
    )
    imp.add_argument(
        "--reason",
        help="where and how these people consented; kept in each one's consent record",
    )
    imp.add_argument(
        "--admin",
        default=os.environ.get("USER", "cli"),
        help="who is importing, for the consent record (default: $USER)",
    )
    imp.add_argument(
        "--dry-run",
        action="store_true",
        help="read the file and report what the import would change, writing nothing",
    )
    imp.add_argument(
        "--update-existing",
        action="store_true",
        help="update the name and attributes of people already here from the file (never "
        "their subscription status)",
    )
    imp.set_defaults(handler=_import)
