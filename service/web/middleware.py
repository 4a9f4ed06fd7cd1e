"""ASGI middleware: body size limit, access log and metrics without tokens, security headers."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import request_id_var
from service.metrics import Metrics

__all__ = ["AccessLogMiddleware", "BodyLimitMiddleware", "SecurityHeadersMiddleware", "redact_path"]

access_log = logging.getLogger("service.access")

_TOKEN_PATH = re.compile(r"^/(confirm|unsubscribe)/[^/?]+")


def redact_path(path: str) -> str:
    """Link tokens are credentials: they never reach a log line."""
    return _TOKEN_PATH.sub(r"/\1/[token]", path)


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Callable[[str, int], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path  # a larger limit for some paths (uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.per_path is not None:
            limit = self.per_path(scope["path"], self.max_bytes)
            if limit != self.max_bytes:
                await BodyLimitMiddleware(self.app, limit)(scope, receive, send)
                return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await _plain(send, 400, b"Invalid Content-Length header.")
                    return
                if declared > self.max_bytes:
                    await _drain(receive, {"more_body": True})
                    await _plain(send, 413, self._message())
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    await _drain(receive, message)
                    raise HTTPException(413, self._message().decode())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> bytes:
        return f"Request body too large: the limit is {self.max_bytes} bytes.".encode()


# Answering before the client has finished sending, then closing, makes the kernel reset the
# connection, and a reset can discard the 413 before the client reads it. So the rest of an
# oversized body is read and dropped first, within bounds (a "lingering close").
DRAIN_MAX_BYTES = 8 * 1024 * 1024
DRAIN_SECONDS = 3.0


async def _drain(receive: Receive, message: Message) -> None:
    drained = 0
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while message.get("more_body", False) and drained <= DRAIN_MAX_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))
    except TimeoutError:
        pass


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class AccessLogMiddleware:
    """One log line and one latency sample per request, under a request id.

    A well-formed ``X-Request-ID`` from the proxy in front is kept, so its logs and ours
    line up; otherwise a new id is made. Either way the response carries it back.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        token = request_id_var.set(request_id)

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status)).observe(elapsed)
            path = redact_path(scope["path"])
            client = scope.get("client")
            access_log.info(
                "%s %s %s %.1fms",
                scope["method"],
                path,
                status,
                elapsed * 1000,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": client[0] if client else None,
                },
            )
            request_id_var.reset(token)


# Pages carry only inline styles and plain forms: nothing else may load or run.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", PAGE_CSP)
                    headers.setdefault("X-Frame-Options", "DENY")
                    headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, add_headers)
