"""The server process: uvicorn, with what start-up made kept out of the collector's way."""

from __future__ import annotations

import gc
import socket

import uvicorn

__all__ = ["Server"]


class Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up made lives as long as the process: the garbage collector need not
        # walk it again in every full collection (each one paused requests for tens of ms).
        gc.collect()
        gc.freeze()
