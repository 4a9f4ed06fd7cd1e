"""The server process: uvicorn, with what start-up made kept out of the collector's way."""

from __future__ import annotations

import contextlib
import gc
import importlib
import socket

import uvicorn
from starlette.applications import Starlette

__all__ = ["Server", "serve", "server_stack"]


class Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up made lives as long as the process: the garbage collector need not
        # walk it again in every full collection (each one paused requests for tens of ms).
        gc.collect()
        gc.freeze()


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def server_stack() -> tuple[str, str]:
    """The event loop and HTTP parser to serve with: uvloop and httptools when installed
    (``pip install '.[fast]'``: about half the CPU a request), else asyncio's and h11."""
    loop = "uvloop" if _importable("uvloop") else "asyncio"
    http = "httptools" if _importable("httptools") else "h11"
    return loop, http


def serve(app: Starlette, host: str, port: int) -> None:
    """Serve ``app`` as ``newsletter serve`` and ``newsletter demo`` do, until Ctrl+C (a
    clean stop, not an error)."""
    loop, http = server_stack()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http=http,
        log_config=None,  # keep our logging setup
        access_log=False,  # ours redacts link tokens; uvicorn's would print them
        server_header=False,
        proxy_headers=False,  # forwarded headers are the app's business (trusted proxies)
        timeout_graceful_shutdown=30,
    )
    with contextlib.suppress(KeyboardInterrupt):
        Server(config).run()
