"""Signups in two steps: the request path only takes them in; a worker acts on them.

Taking a signup in is the same work whatever the address: count the client's and the
list's rate limits, write one ``signup_requests`` row, answer 202. So the answer for a
new, pending, confirmed, unsubscribed, throttled or bot-filled address is the same bytes
after the same time, and no SMTP or DNS is on the request path.

The worker then takes a batch of rows, deletes them and acts on them in one transaction
of a few set-based statements (`Subscriptions.subscribe_many`; a crash leaves them for
the next try; if the batch cannot be written, its rows are tried one at a time and a row
that fails alone is dropped), and queues no more confirmation emails than the
service-wide cap allows; above the cap, rows wait for the next window. Taking signups in
tells the workers of other processes (`Database.write_batch` with ``announce``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import Integer, bindparam, delete, insert, select
from sqlalchemy.sql import Executable

from service import blocklist, limits, surge
from service.bots import Stamp
from service.db import Database, Unavailable, Write, Writes, insert_or_ignore, run
from service.metrics import Metrics
from service.models import MailingList, SignupRequest, UsedChallenge, utcnow
from service.settings import Settings
from service.subscriptions import Asked, Outcome, RequestOrigin, Signup, Subscriptions
from service.wakeup import Wakeup

__all__ = ["Intake", "Refused"]

log = logging.getLogger(__name__)

BATCH = 50  # signups acted on per transaction (on SQLite, ~10 ms of the event loop)
GROUP = 200  # signups taken in per transaction, at most
JOIN_ROUNDS = 3  # event-loop rounds a write waits for more signups, while more come
CONFIRMATIONS = limits.CONFIRMATIONS


@dataclass(frozen=True)
class Refused:
    """Not taken: over a rate limit (answer 429, come back after ``retry_after`` seconds),
    or with a form stamp spent already."""

    retry_after: float
    scope: str  # "client", "list" or "stamp"


@dataclass
class _Ask:
    mailing_list: MailingList
    signup: Signup
    origin: RequestOrigin
    verdict: str
    stamp: Stamp | None
    answer: asyncio.Future[Refused | None]


class Intake:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        subscriptions: Subscriptions,
        metrics: Metrics,
        wakeup: Wakeup | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._subscriptions = subscriptions
        self._metrics = metrics
        self._wakeup = wakeup or Wakeup()  # set: a signup is waiting, or mail was queued
        self._waiting: list[_Ask] = []
        # Each signup counts against the client's and the list's limits, and in the windows
        # the surge reads (``service.surge``: counted, never refused).
        self._rates = (
            settings.rate_limit_ip + surge.counting(settings.pow_surge_client),
            settings.rate_limit_list + surge.counting(settings.pow_surge_list),
        )
        self._writer: asyncio.Task[None] | None = None

    async def take(
        self,
        mailing_list: MailingList,
        signup: Signup,
        origin: RequestOrigin,
        *,
        verdict: str = "",
        stamp: Stamp | None = None,
    ) -> Refused | None:
        """Record a signup for the worker, unless the client or the list is over its limit,
        or its form stamp was spent already (``Refused`` with scope ``stamp``).

        Returns once the signup is committed. Signups that arrive while a write is under
        way are written together in the next one (group commit): under load, one
        transaction carries many signups instead of each waiting for its own.
        """
        ask = _Ask(
            mailing_list, signup, origin, verdict, stamp, asyncio.get_running_loop().create_future()
        )
        self._waiting.append(ask)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name="signup-writer")
        refused = await asyncio.shield(ask.answer)
        if refused is None:
            self._wakeup.set()
        elif refused.scope == "stamp":
            log.info("signup refused: its form stamp was used already")
        elif refused.scope == "client":
            self._metrics.rate_limited.labels("client").inc()
            log.info("signup refused: client %s over its rate limit", origin.ip)
        else:
            self._metrics.rate_limited.labels("list").inc()
            log.warning("signup refused: list %s over its rate limit", mailing_list.slug)
        return refused

    async def _write_waiting(self) -> None:
        # Let the requests the event loop is already working on hand theirs in first: a
        # write costs about the same for one signup as for twenty.
        for _ in range(JOIN_ROUNDS):
            waiting = len(self._waiting)
            await asyncio.sleep(0)
            if len(self._waiting) == waiting:
                break
        while self._waiting:
            batch, self._waiting = self._waiting[:GROUP], self._waiting[GROUP:]
            try:
                answers = await self._write(batch)
            except BaseException as exc:
                for ask in batch:
                    if not ask.answer.done():
                        ask.answer.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for ask, answer in zip(batch, answers, strict=True):
                ask.answer.set_result(answer)

    async def _write(self, batch: list[_Ask]) -> list[Refused | None]:
        return await self._db.write_batch(partial(self._store, batch, utcnow()), announce=True)

    def _store(self, batch: list[_Ask], now: datetime) -> Writes[list[Refused | None]]:
        """Spend the batch's form stamps, count its rate limits and store the signups they
        allow, in one transaction (a statement for the stamps, one for the counters, one for
        the rows)."""
        answers: list[Refused | None] = [None] * len(batch)
        stamped = {ask.stamp.digest: ask.stamp for ask in batch if ask.stamp is not None}
        if stamped:
            rows = [{"digest": s.digest, "expires_at": s.expires_at} for s in stamped.values()]
            fresh = {row.digest for row in (yield Write(_spend_stamps, rows))}
            for i, ask in enumerate(batch):
                if ask.stamp is not None:
                    if ask.stamp.digest in fresh:
                        fresh.discard(ask.stamp.digest)  # good once, even within a batch
                    else:
                        answers[i] = Refused(0.0, "stamp")
        counted = [i for i, answer in enumerate(answers) if answer is None]
        keys = [
            (limits.client_key(batch[i].origin.ip), limits.list_key(batch[i].mailing_list.id))
            for i in counted
        ]
        rates = self._rates
        # One hit per signup and scope; `add` counts a key's hits together, in this order.
        hits = [(key, 1, r) for both in keys for key, r in zip(both, rates, strict=True)]
        waits = (yield from limits.add(hits, now)) if hits else {}
        seen: Counter[str] = Counter()
        for i, ask_keys in zip(counted, keys, strict=True):
            for scope, key in zip(("client", "list"), ask_keys, strict=True):
                wait = waits[key][seen[key]]
                seen[key] += 1
                if wait is not None and answers[i] is None:
                    answers[i] = Refused(wait, scope)
        rows = [
            {
                "list_id": ask.mailing_list.id,
                "email": ask.signup.email,
                "name": ask.signup.name,
                "page_url": ask.signup.page_url,
                "language": ask.signup.language,
                "box_source": ask.signup.box_source,
                "ip_address": ask.origin.ip,
                "user_agent": (ask.origin.user_agent or "")[:512] or None,
                "verdict": ask.verdict,
                "received_at": now,
            }
            for ask, answer in zip(batch, answers, strict=True)
            if answer is None
        ]
        if rows:
            yield Write(insert(SignupRequest), rows)
        return answers

    async def process(self) -> int:
        """Act on up to one batch of waiting signups; how many were handled."""
        async with self._db.read() as session:
            if await session.scalar(select(SignupRequest.id).limit(1)) is None:
                return 0  # nothing waiting: no write transaction for nothing
        # Each signup queues at most one email: take no more than the cap has room for.
        room = await self._confirmations_left()
        if room <= 0:
            return 0
        try:
            outcomes = await self._db.write_batch(partial(self._act, min(BATCH, room), utcnow()))
        except Unavailable:
            raise  # the database is sick, not the batch: it stays for when it heals
        except Exception:
            # Something in the batch cannot be acted on: find it, one signup at a time, so
            # one bad row does not hold back the others forever.
            log.exception("a batch of signups could not be acted on; trying them one by one")
            outcomes = await self._one_by_one(min(BATCH, room))
        for outcome in outcomes:
            if outcome is Outcome.THROTTLED:
                self._metrics.signups_dropped.labels("inbox-limit").inc()
        if Outcome.QUEUED in outcomes:
            self._wakeup.set()
        return len(outcomes)

    async def _one_by_one(self, count: int) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for _ in range(count):
            for attempt in range(2):  # a second try first: the error may have passed
                try:
                    outcomes += await self._db.write_batch(partial(self._act, 1, utcnow()))
                    break
                except Unavailable:
                    raise  # never drop a signup for a fault of the database's
                except Exception:
                    if not attempt:
                        continue
                    log.exception("a signup could not be acted on; dropped")
                    outcomes += await self._db.write_batch(_drop_first)
        return outcomes

    def _act(self, count: int, now: datetime) -> Writes[list[Outcome]]:
        """Take up to ``count`` signups off the intake and act on them, in one transaction;
        an outcome each (`Subscriptions.subscribe_many`)."""
        rows = sorted((yield Write(_TAKE, {"count": count})), key=lambda r: r.id)
        if not rows:
            return []
        lists = {
            row.id: MailingList(**row._mapping)
            for row in (yield Write(_LISTS, {"ids": sorted({r.list_id for r in rows})}))
        }
        barred = yield from blocklist.blocked_in_batch({r.email for r in rows if not r.verdict})
        asked: list[Asked] = []
        for row in rows:
            mailing_list = lists.get(row.list_id)
            if row.verdict or mailing_list is None:
                log.info("signup %s dropped (%s)", row.id, row.verdict or "list deleted")
                continue
            if row.email in barred:  # answered like any signup; nothing written or sent
                log.info("signup %s dropped: the address or its domain is blocklisted", row.id)
                self._metrics.signups_dropped.labels("blocklist").inc()
                continue
            asked.append(
                Asked(
                    mailing_list,
                    Signup(
                        row.email,
                        row.name,
                        row.page_url,
                        row.language,
                        box_source=row.box_source,
                    ),
                    RequestOrigin(ip=row.ip_address, user_agent=row.user_agent),
                    row.received_at,
                )
            )
        outcomes = yield from self._subscriptions.subscribe_many(asked, now)
        queued = outcomes.count(Outcome.QUEUED)
        rates = self._settings.rate_limit_confirmations
        if queued and rates:
            yield from limits.add([(CONFIRMATIONS, queued, rates)], now)
        return outcomes + [Outcome.NOTHING] * (len(rows) - len(asked))

    async def _confirmations_left(self) -> int:
        """How many more confirmations the service-wide cap allows now (BATCH if no cap)."""
        now = utcnow()
        room = BATCH
        async with self._db.read() as session:
            for rate in self._settings.rate_limit_confirmations:
                left = rate.hits - await run(session, limits.count(CONFIRMATIONS, rate, now))
                room = min(room, left)
        if room <= 0:
            log.warning("service-wide confirmation cap reached; signups wait for the next window")
        return room


# Built once: building a statement (and its cache key) costs more than running it.
_TAKE = (  # delete the oldest signups and return them (on PostgreSQL, skipping those
    # another worker is taking)
    delete(SignupRequest)
    .where(
        SignupRequest.id.in_(
            select(SignupRequest.id)
            .order_by(SignupRequest.id)
            .limit(bindparam("count", type_=Integer))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .returning(*SignupRequest.__table__.columns)
)
_LISTS = select(MailingList.__table__).where(MailingList.id.in_(bindparam("ids", expanding=True)))


def _drop_first() -> Writes[list[Outcome]]:
    """Delete the oldest signup, which cannot be acted on."""
    rows = list((yield Write(_TAKE, {"count": 1})))
    for row in rows:
        log.warning("signup %s dropped: it could not be acted on", row.id)
    return [Outcome.NOTHING] * len(rows)


@functools.cache
def _spend_stamps(dialect: str) -> Executable:
    """Remember form stamps as used; returns those that were not (built once)."""
    return insert_or_ignore(dialect, UsedChallenge).returning(UsedChallenge.digest)
