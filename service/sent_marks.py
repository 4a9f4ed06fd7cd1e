"""Recording sent mail in batches: one write for the messages that were accepted together.

Each send lane hands over the row the SMTP server has just accepted and waits until it is
recorded; whatever the other lanes handed over meanwhile is recorded in the same write
(group commit): one ``UPDATE ... WHERE id IN (...)`` in one trip (`Database.write_one`).
A lane waits for its own record before it sends the next message, so no more messages
than there are lanes are ever accepted and not yet recorded: the window in which a dead
worker causes a resend stays one write long.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import bindparam, update

from service.db import Database, Write
from service.models import OutboxMessage, OutboxStatus, utcnow

__all__ = ["SentMarks"]

log = logging.getLogger(__name__)

FIRST_RETRY = 0.05  # seconds; doubled each time, up to
LAST_RETRY = 5.0


class SentMarks:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: list[tuple[OutboxMessage, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def sent(self, row: OutboxMessage) -> None:
        """Record ``row`` as sent; returns once that is committed.

        The server has the message: this write must land, or a later claim would resend
        it. It is retried until it does.
        """
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name="sent-marks")
        await asyncio.shield(done)

    async def _write_waiting(self) -> None:
        await asyncio.sleep(0)  # lanes that are finishing now join this write
        delay = FIRST_RETRY
        while self._waiting:
            batch, self._waiting = self._waiting, []
            rows = [row for row, _ in batch]
            try:
                await self._db.write_one(_mark(rows))
            except Exception:
                log.exception("%s sent, but could not record it; retrying", _ids(rows))
                self._waiting = batch + self._waiting
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAST_RETRY)
                continue
            delay = FIRST_RETRY
            for row, done in batch:
                log.info("outbox %s: sent %s (attempt %s)", row.id, row.template, row.attempts)
                if not done.done():
                    done.set_result(None)


def _mark(rows: list[OutboxMessage]) -> Write:
    return Write(_MARK, {"ids": [row.id for row in rows], "now": utcnow()})


# Built once: building a statement (and its cache key) costs more than running it.
_MARK = (
    update(OutboxMessage)
    .where(OutboxMessage.id.in_(bindparam("ids", expanding=True)))
    .values(
        status=OutboxStatus.SENT,
        sent_at=bindparam("now", type_=OutboxMessage.sent_at.type),
        lease_until=None,
    )
)


def _ids(rows: list[OutboxMessage]) -> str:
    return "outbox " + ", ".join(str(row.id) for row in rows)
