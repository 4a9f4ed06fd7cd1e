"""ASGI middleware: body size and time limits, access log and metrics without tokens,
security headers (a nonce-based Content-Security-Policy on every page)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from random import getrandbits

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import request_id_var
from service.metrics import Metrics

__all__ = [
    "AccessLogMiddleware",
    "BodyLimitMiddleware",
    "SecurityHeadersMiddleware",
    "content_security_policy",
    "csp_nonce",
    "redact_path",
]

access_log = logging.getLogger("service.access")

# The whole body of a request must arrive within this time (uploads: see UPLOAD_MIN_RATE).
BODY_SECONDS = 30.0
UPLOAD_MIN_RATE = 256 * 1024  # bytes per second an upload of the largest size may take

_TOKEN_PATH = re.compile(r"^/(confirm|unsubscribe)/[^/?]+")


def redact_path(path: str) -> str:
    """Link tokens are credentials: they never reach a log line."""
    if not path.startswith(("/confirm/", "/unsubscribe/")):
        return path
    return _TOKEN_PATH.sub(r"/\1/[token]", path)


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed;
    408 for bodies that take too long to arrive.

    A client that trickles its body a byte at a time (slowloris) would hold a connection
    and a request slot for as long as it liked: the whole body must arrive within
    ``body_seconds`` of the request's start. The larger limit of upload paths comes with
    a longer time, enough for the file at ``UPLOAD_MIN_RATE``.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        per_path: Callable[[str, int], int] | None = None,
        body_seconds: float = BODY_SECONDS,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path  # a larger limit for some paths (uploads)
        self.body_seconds = body_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.per_path is not None:
            limit = self.per_path(scope["path"], self.max_bytes)
            if limit != self.max_bytes:
                seconds = max(self.body_seconds, limit / UPLOAD_MIN_RATE)
                await BodyLimitMiddleware(self.app, limit, body_seconds=seconds)(
                    scope, receive, send
                )
                return
        api = scope["path"].startswith("/api/")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await _refuse(send, api, 400, "Invalid Content-Length header.")
                    return
                if declared > self.max_bytes:
                    await _drain(receive, {"more_body": True})
                    await _refuse(send, api, 413, self._message())
                    return
        received = 0
        deadline = asyncio.get_running_loop().time() + self.body_seconds

        async def limited() -> Message:
            nonlocal received
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"The request body took too long: send it within {self.body_seconds:g} "
                    "seconds.",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    await _drain(receive, message)
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"Request body too large: the limit is {self.max_bytes} bytes."


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


async def _refuse(send: Send, api: bool, status: int, message: str) -> None:
    """Answer before the app runs: JSON in the API's error shape on /api/, else text."""
    if api:
        code = {400: "bad_request", 413: "payload_too_large"}[status]
        body = json.dumps({"error": code, "message": message}).encode()
        content_type = b"application/json"
    else:
        body = message.encode()
        content_type = b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
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
        # Ids need only be unique enough to find a request's lines, not unguessable.
        request_id = incoming if _REQUEST_ID.match(incoming) else f"{getrandbits(64):016x}"
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


CSP_NONCE = "csp_nonce"


def csp_nonce(scope: Scope) -> str:
    """This request's Content-Security-Policy nonce, made when first asked for (only pages
    need one); it lives in the request's own copy of the state (SecurityHeadersMiddleware).
    """
    state = scope["state"]
    nonce: str | None = state[CSP_NONCE]  # KeyError: the middleware did not run
    if nonce is None:
        nonce = state[CSP_NONCE] = secrets.token_urlsafe(18)
    return nonce


def content_security_policy(nonce: str, **changes: str) -> str:
    """The policy of our pages: only what carries this response's nonce may run or style.

    ``changes`` add or replace directives (``frame_src="'self'"`` for frame-src). No
    policy made here allows 'unsafe-inline': style attributes are not used in pages.
    """
    directives = {
        "default-src": "'none'",
        "script-src": f"'nonce-{nonce}'",
        "style-src": f"'nonce-{nonce}'",
        "img-src": "data:",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "object-src": "'none'",
    }
    directives.update({name.replace("_", "-"): value for name, value in changes.items()})
    return "; ".join(f"{name} {value}" for name, value in directives.items())


# For everything that is not a page (JSON, CSV, scripts): if opened as a document, it may
# load nothing and be framed by no one.
RESOURCE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    """Security headers on every response, and a fresh CSP nonce for every page.

    The nonce (`csp_nonce`) goes into the request's state, where ``page()`` hands it to
    the templates for their ``<style>`` and ``<script>`` tags, and into the page's
    policy. A route that needs another policy sets its own header, built with
    ``content_security_policy``.
    """

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"permissions-policy", PERMISSIONS_POLICY.encode()),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if https:  # Strict-Transport-Security only when served over HTTPS
            common.append((b"strict-transport-security", HSTS.encode()))
        # Added where the response has not set its own; pages also get their policy.
        self._headers = {
            True: [*common, (b"x-frame-options", b"DENY")],
            False: [*common, (b"content-security-policy", RESOURCE_CSP.encode())],
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A copy: the lifespan's state dict is shared by every request.
        scope["state"] = {**scope.get("state", {}), CSP_NONCE: None}

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", ()))
                present = {name.lower() for name, _ in raw}
                html = any(
                    name.lower() == b"content-type" and value.startswith(b"text/html")
                    for name, value in raw
                )
                for name, value in self._headers[html]:
                    if name not in present:
                        raw.append((name, value))
                if html and b"content-security-policy" not in present:
                    policy = content_security_policy(csp_nonce(scope))
                    raw.append((b"content-security-policy", policy.encode()))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, add_headers)
