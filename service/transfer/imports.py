"""Import subscribers into a list from a CSV file: ours, Mailchimp's or listmonk's.

An import never half-happens: the whole file is read and checked first (its encoding,
its delimiter, its header, every row), and only then written. A file that cannot be
decoded or parsed writes nothing, and the refusal names its line as a text editor counts
lines (a quoted cell may span several). The encoding is UTF-8 (with or without a BOM),
UTF-16 with a BOM, or else Windows-1252 (what Excel saves); the delimiter is a comma, a
semicolon or a tab, whichever the header row uses. The format is recognised from the
header row and each row read by that format's reader (``service.transfer.formats``). Each
row's address is checked like a signup's; a bad row is reported with its line number and
the rest go on. Rows are written in batches, one transaction each; the subscriptions
themselves, their consent records and confirmation emails are written by
``service.subscriptions``.

Importing is idempotent: an address already on the list is left exactly as it is (an
unsubscribed one stays unsubscribed, and the report says so), an erased address stays
suppressed, and running the same import again changes nothing. On request
(``update_existing``) the names and attributes of people already here are updated from
the file (a name given replaces theirs, attributes are merged, the file's winning), never
their subscriptions' status. New addresses are either

- **confirmed** now, on the admin's word: the consent record keeps who imported them,
  from which file, and the reason given (where and how these people consented); or
- sent a **double opt-in** email: the subscription is pending and the confirmation email
  is queued in the outbox in the same transaction, for the worker to send. The emails
  follow the service-wide confirmation cap (NEWSLETTER_RATE_LIMIT_CONFIRMATIONS), shared
  with signups: those the cap has room for are sent now, the others wait in the outbox
  for the windows that have room (``confirmation_waiting`` in the report).

Rows marked unsubscribed in the file (our ``unsubscribed``, Mailchimp's unsubscribed
export, listmonk's ``blocklisted``) are recorded as unsubscribed, so a migration keeps
its opt-outs; rows whose delivery failed (our ``failed``, Mailchimp's cleaned export) are
not imported. An opt-out in the file wins over a subscription here: whoever is confirmed
or pending on the list and marked unsubscribed, cleaned or blocklisted in the file is
unsubscribed (``unsubscribed_by_file`` in the report). Addresses the blocklist blocks
(``service.blocklist``) are not imported, and counted (``blocklisted``); an opt-out of
theirs in the file still wins.

Columns a format maps are kept in their place (Mailchimp's opt-in and confirmation times
and IP addresses go into the consent records); the other tool's bookkeeping columns are
dropped; any other column is kept in a new subscriber's attributes. The report lists the
columns that were not kept. Rows still pending in the file were never confirmed, so they get a
confirmation email even in a confirmed import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service import blocklist
from service.db import Database, insert_or_ignore
from service.emails import Emails
from service.models import (
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.settings import Rate
from service.subscriptions import Imported, add_imported, unsubscribe_by_import
from service.suppressions import AddressKeys
from service.suppressions import suppressed as suppressed_of
from service.transfer.reading import (
    ImportFileError,
    ImportReport,
    ImportRow,
    decode,
    read_csv,
)

__all__ = [
    "ImportFileError",
    "ImportOptions",
    "ImportReport",
    "decode",
    "import_rows",
    "read_csv",
]

BATCH = 500
ACTIVE = (SubscriptionStatus.CONFIRMED, SubscriptionStatus.PENDING)


@dataclass(frozen=True)
class ImportOptions:
    confirmed: bool  # False: double opt-in
    admin: str
    reason: str = ""
    source: str = "upload"  # the file's name, for the consent record
    dry_run: bool = False  # report what would change, write nothing
    update_existing: bool = False  # update the names and attributes of people already here
    confirmation_cap: tuple[Rate, ...] = ()  # NEWSLETTER_RATE_LIMIT_CONFIRMATIONS

    def __post_init__(self) -> None:
        if self.confirmed and not self.reason.strip():
            raise ValueError(
                "Say where and how these people consented (the reason): it is kept as their "
                "consent record."
            )


# Writing ---------------------------------------------------------------------------------


def _source_url(value: str | None) -> str | None:
    if value and urlsplit(value).scheme in {"http", "https"} and len(value) <= 2048:
        return value
    return None


class _DryRun(Exception):
    """Raised at the end of a dry run's transaction, to roll it back."""


async def _write(
    db: Database,
    emails: Emails | None,
    mailing_list: MailingList,
    rows: list[ImportRow],
    options: ImportOptions,
    report: ImportReport,
    addresses: AddressKeys,
) -> int:
    """Write one batch in one transaction; the number of confirmation emails queued (a dry
    run rolls its transaction back: nothing written, the counts kept)."""
    now = utcnow()
    try:
        async with db.write() as session:
            # Erased inboxes stay out, under any spelling of the address (as at every door).
            suppressed = await suppressed_of(session, addresses, [r.email for r in rows])
            barred = await blocklist.blocked(session, [r.email for r in rows])
            fresh = [r for r in rows if r.email not in suppressed and r.email not in barred]
            if options.update_existing and fresh:
                await _update_people(session, fresh, report)
            if fresh:
                await session.execute(
                    insert_or_ignore(session, Subscriber),
                    [
                        {
                            "email": r.email,
                            "name": r.name,
                            "attributes": r.attributes,
                            "created_at": now,
                        }
                        for r in fresh
                    ],
                )
            known = await session.execute(
                select(Subscriber.email, Subscriber.id).where(
                    Subscriber.email.in_([r.email for r in rows if r.email not in suppressed])
                )
            )
            ids: dict[str, int] = {email: subscriber_id for email, subscriber_id in known}
            on_list = await session.execute(
                select(Subscription.subscriber_id, Subscription.status).where(
                    Subscription.list_id == mailing_list.id,
                    Subscription.subscriber_id.in_(list(ids.values())),
                )
            )
            existing: dict[int, SubscriptionStatus] = {sid: status for sid, status in on_list}
            taken: set[int] = set()  # subscribers this batch already adds
            opted_out: dict[int, str] = {}  # on the list here, opted out in the file
            new: list[tuple[ImportRow, Imported]] = []
            for row in rows:
                if row.email in suppressed:
                    report.suppressed += 1
                    report.note(row.line, f"{row.email} was erased earlier and stays suppressed")
                    continue
                subscriber_id = ids.get(row.email, 0)  # 0: a blocklisted newcomer
                status = existing.get(subscriber_id)
                if row.email in barred and not (status in ACTIVE and row.opt_out):
                    report.blocklisted += 1
                    report.note(row.line, f"{row.email} is blocklisted: not imported")
                    continue
                if status in ACTIVE and row.opt_out and subscriber_id not in taken:
                    taken.add(subscriber_id)
                    opted_out[subscriber_id] = row.opt_out
                    continue
                if status == SubscriptionStatus.UNSUBSCRIBED and row.status != "unsubscribed":
                    report.left_unsubscribed += 1
                    report.note(
                        row.line,
                        f"{row.email} unsubscribed from this list earlier: left unsubscribed",
                    )
                    continue
                if status is not None or subscriber_id in taken:
                    report.unchanged += 1
                    continue
                if row.status == "failed":
                    report.failed_in_file += 1
                    report.note(row.line, f"{row.email} is marked undeliverable in the file")
                    continue
                taken.add(subscriber_id)
                new.append(
                    (
                        row,
                        Imported(
                            subscriber_id,
                            row.email,
                            row.status,
                            row.subscribed_at,
                            row.confirmed_at,
                            row.unsubscribed_at,
                            _source_url(row.consent_source),
                            row.optin_ip,
                            row.confirm_ip,
                            row.optin_user_agent,
                            row.optin_wording,
                            row.confirm_user_agent,
                            row.confirm_wording,
                        ),
                    )
                )
            added, waiting = await add_imported(
                session,
                mailing_list,
                [imported for _, imported in new],
                confirmed=options.confirmed,
                admin=options.admin,
                source=options.source,
                reason=options.reason,
                emails=emails,
                now=now,
                cap=options.confirmation_cap,
            )
            unsubscribed = await unsubscribe_by_import(
                session,
                mailing_list,
                opted_out,
                admin=options.admin,
                source=options.source,
                now=now,
            )
            report.unsubscribed_by_file += len(unsubscribed)
            report.unchanged += len(opted_out) - len(unsubscribed)  # unsubscribed meanwhile
            queued = 0
            for _, imported in new:
                status = added.get(imported.subscriber_id)
                if status is None:  # subscribed at this very moment by other means
                    report.unchanged += 1
                elif status == SubscriptionStatus.UNSUBSCRIBED:
                    report.unsubscribed += 1
                elif status == SubscriptionStatus.CONFIRMED:
                    report.confirmed += 1
                elif imported.subscriber_id in waiting:
                    report.confirmation_waiting += 1
                    queued += 1
                else:
                    report.confirmation_sent += 1
                    queued += 1
            if options.dry_run:
                raise _DryRun  # rolls the transaction back: nothing written, the counts kept
    except _DryRun:
        return 0
    return queued


async def _update_people(
    session: AsyncSession, rows: list[ImportRow], report: ImportReport
) -> None:
    """Update the people already here from their rows: a name given replaces theirs, the
    attributes are merged (the file's winning). Their subscriptions are left as they are."""
    found = await session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.attributes).where(
            Subscriber.email.in_([r.email for r in rows])
        )
    )
    people = {email: (sid, name, attributes or {}) for sid, email, name, attributes in found}
    for row in rows:
        if row.email not in people:
            continue
        sid, name, attributes = people[row.email]
        new_name = row.name or name
        merged = {**attributes, **row.attributes}
        if new_name == name and merged == attributes:
            continue
        await session.execute(
            update(Subscriber).where(Subscriber.id == sid).values(name=new_name, attributes=merged)
        )
        report.updated += 1


async def import_rows(
    db: Database,
    emails: Emails | None,
    mailing_list: MailingList,
    data: bytes,
    options: ImportOptions,
    *,
    addresses: AddressKeys,
    on_mail_queued: Callable[[], None] = lambda: None,
    on_batch: Callable[[int, int], None] = lambda done, total: None,
) -> ImportReport:
    """Import the CSV file ``data`` into ``mailing_list``; what happened to each row.

    The whole file is read and checked before anything is written: ImportFileError (and
    nothing stored) if it cannot be read.
    """
    report = ImportReport(dry_run=options.dry_run)
    text, report.encoding = decode(data)
    rows = list(read_csv(text, report))
    del text
    seen: dict[str, int] = {}
    batch: list[ImportRow] = []
    done = 0

    async def flush() -> None:
        nonlocal done
        done += len(batch)
        if batch:
            if await _write(db, emails, mailing_list, batch, options, report, addresses):
                on_mail_queued()
            batch.clear()
        on_batch(done, len(rows))

    for item in rows:
        if isinstance(item, tuple):
            report.error(*item)
            continue
        first = seen.get(item.email)
        if first is not None:
            report.duplicates += 1
            report.note(item.line, f"{item.email} already on line {first}")
            continue
        seen[item.email] = item.line
        batch.append(item)
        if len(batch) >= BATCH:
            await flush()
    await flush()
    return report
