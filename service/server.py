"""The server process: uvicorn, with what start-up made kept out of the collector's way."""

from __future__ import annotations

import contextlib
import gc
import socket

import uvicorn
from starlette.applications import Starlette

__all__ = ["Server", "serve"]


class Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up made lives as long as the process: the garbage collector need not
        # walk it again in every full collection (each one paused requests for tens of ms).
        gc.collect()
        gc.freeze()


def serve(app: Starlette, host: str, port: int) -> None:
    """Serve ``app`` as ``newsletter serve`` and ``newsletter demo`` do, until Ctrl+C (a
    clean stop, not an error)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep our logging setup
        access_log=False,  # ours redacts link tokens; uvicorn's would print them
        server_header=False,
        proxy_headers=False,  # forwarded headers are the app's business (trusted proxies)
        timeout_graceful_shutdown=30,
    )
    with contextlib.suppress(KeyboardInterrupt):
        Server(config).run()
