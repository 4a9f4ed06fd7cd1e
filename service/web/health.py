"""Health checks for load balancers, orchestrators and the container's HEALTHCHECK.

``/healthz`` (liveness): the process answers. It touches nothing else, so a database
outage does not get every process restarted. ``/readyz`` (readiness): the database answers
within ``READY_TIMEOUT``, its schema has every migration this version needs (a newer
one, left by a newer version, is fine), and it takes a write (one row rewritten: a
read-only file or server, a full disk and a lock held too long all fail it), so the
process can serve. A failed write check says why (``"database": "read-only"``, ...); the
check itself reopens the connections that met the fault, so a process becomes ready again
on its own once the cause is gone.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse
from starlette.routing import Route

from service.db import Unavailable
from service.state import AppRequest
from service.web.refusals import retry_after_header

__all__ = ["READY_TIMEOUT", "routes"]

log = logging.getLogger(__name__)

READY_TIMEOUT = 3.0
NO_STORE = {"Cache-Control": "no-store"}


async def healthz(request: AppRequest) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


async def readyz(request: AppRequest) -> JSONResponse:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            status = await request.state["db"].schema_status()
    except Exception as exc:
        # The reason goes to the log only: it may name hosts and users.
        log.warning("not ready: database unreachable: %s: %s", type(exc).__name__, exc)
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable"}, status_code=503, headers=NO_STORE
        )
    if not status.usable:
        log.warning("not ready: %s; run `newsletter migrate`", status.describe())
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "schema": "outdated"},
            status_code=503,
            headers=NO_STORE,
        )
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await request.state["db"].check_writes()
    except (Unavailable, TimeoutError) as exc:
        reason = exc.reason if isinstance(exc, Unavailable) else "busy"
        log.warning("not ready: the database takes no writes (%s)", reason)
        return JSONResponse(
            {"status": "unavailable", "database": reason, "schema": "ok"},
            status_code=503,
            headers={**NO_STORE, "Retry-After": retry_after_header(READY_TIMEOUT)},
        )
    schema = "current" if status.is_current else "newer"
    return JSONResponse({"status": "ok", "database": "ok", "schema": schema}, headers=NO_STORE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
