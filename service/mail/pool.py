"""Open SMTP connections kept for reuse: connect, EHLO, STARTTLS and AUTH once, not per email.

At most ``max_size`` connections exist at a time; a caller wanting one more waits. A
connection goes back to the pool after a message was accepted, or after a refusal that
left the session usable (aiosmtplib sends RSET after a refused transaction). After a
421 at any stage ("closing transmission channel": the server is ending the session, even
if it goes on reading), a dropped connection, a timeout or anything unexpected it is
closed, never reused.

Before a connection is handed out again, the pool checks it is still open (a server that
closed it is noticed here) and, if it sat idle for a while, that it still answers a NOOP;
a dead one is replaced by a new connection, so a server that closes idle sessions costs
a reconnect, not a failed delivery. Connections idle for ``idle_timeout`` are closed with
QUIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiosmtplib

__all__ = ["SMTPPool"]

log = logging.getLogger(__name__)

# A connection idle longer than this is probed with NOOP before it carries a message;
# during a burst connections go straight back to work without the extra round trip.
PROBE_AFTER = 1.0


class SMTPPool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[aiosmtplib.SMTP]],
        *,
        max_size: int,
        idle_timeout: float,
    ) -> None:
        self._connect = connect
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # most recently used last
        self._idle_timeout = idle_timeout
        self._reaper: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.opened = 0  # connections made so far

    @property
    def idle(self) -> int:
        """Open connections waiting for the next message."""
        return len(self._idle)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected, greeted (and logged-in) session for one mail transaction."""
        async with self._slots:
            smtp = await self._take()
            try:
                yield smtp
            except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
                # The server said no; the session itself is fine if it is still open, unless
                # the server said it is closing it.
                if _closing(exc):
                    self._discard(smtp)
                else:
                    self._give_back(smtp)
                raise
            except BaseException:
                self._discard(smtp)
                raise
            self._give_back(smtp)

    async def close(self) -> None:
        """QUIT every idle connection (those in use are closed when given back)."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            self._quit(smtp)
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=5)

    async def _take(self) -> aiosmtplib.SMTP:
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            if not smtp.is_connected or now - since >= self._idle_timeout:
                self._discard(smtp)
                continue
            if now - since >= PROBE_AFTER:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError):
                    self._discard(smtp)
                    continue
            return smtp
        smtp = await self._connect()
        self.opened += 1
        log.debug("SMTP connection %s opened", self.opened)
        return smtp

    def _give_back(self, smtp: aiosmtplib.SMTP) -> None:
        if not smtp.is_connected:
            self._discard(smtp)
            return
        self._idle.append((smtp, time.monotonic()))
        if self._reaper is None:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(self._idle_timeout, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        now = time.monotonic()
        keep: list[tuple[aiosmtplib.SMTP, float]] = []
        for smtp, since in self._idle:
            if now - since >= self._idle_timeout:
                self._quit(smtp)
            else:
                keep.append((smtp, since))
        self._idle = keep
        if keep:
            wait = self._idle_timeout - (now - keep[0][1])
            self._reaper = asyncio.get_running_loop().call_later(max(wait, 0.01), self._reap)

    def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        async def quit_quietly() -> None:
            try:
                await smtp.quit(timeout=5)
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()

        task = asyncio.get_running_loop().create_task(quit_quietly())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    def _discard(smtp: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(Exception):
            smtp.close()


CLOSING = 421  # "Service not available, closing transmission channel" (RFC 5321 3.8)


def _closing(exc: aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused) -> bool:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return any(refused.code == CLOSING for refused in exc.recipients)
    return exc.code == CLOSING
