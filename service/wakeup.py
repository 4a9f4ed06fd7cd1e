"""The signal that work is waiting: set by whoever queues it, awaited by the worker.

One per process, made where the parts are wired together (``service.components``). A
worker in another process hears of signups through the database instead
(`Database.listen_for_work`), which sets this signal there.
"""

from __future__ import annotations

import asyncio

__all__ = ["Wakeup"]


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        """Something was queued: whoever waits looks now instead of at its next poll."""
        self._event.set()

    async def wait(self) -> None:
        """Return once it is set (at once if it was set meanwhile), and clear it."""
        await self._event.wait()
        self._event.clear()
