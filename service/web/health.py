"""Health checks for load balancers, orchestrators and the container's HEALTHCHECK.

``/healthz`` (liveness): the process answers. It touches nothing else, so a database
outage does not get every process restarted. ``/readyz`` (readiness): the database answers
within ``READY_TIMEOUT`` and its schema has every migration this version needs (a newer
one, left by a newer version, is fine), so the process can serve.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse
from starlette.routing import Route

from service.state import AppRequest

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
    schema = "current" if status.is_current else "newer"
    return JSONResponse({"status": "ok", "database": "ok", "schema": schema}, headers=NO_STORE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
