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

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import info_line, request_id_var
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
        has_body = False
        for name, value in scope["headers"]:
            if name == b"transfer-encoding":
                has_body = True
            elif name == b"content-length":
                has_body = True
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
        if not has_body:  # neither header: HTTP/1.1 says there is no body (RFC 9112 6.3)
            await self.app(scope, receive, send)
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

    Every request pays for this, so it is kept lean: the latency histogram's child for a
    route, method and status is looked up once, and the line is made only when the
    access log is on (see ``service.logs`` for what a line costs).
    """

    MAX_SERIES = 2000  # children remembered; beyond, looked up each time

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._observe: dict[tuple[str, str, int], Callable[[float], None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        # Ids need only be unique enough to find a request's lines, not unguessable.
        if not (incoming and _REQUEST_ID.match(incoming)):
            incoming = f"{getrandbits(64):016x}"
        request_id = incoming
        token = request_id_var.set(request_id)
        id_header = (b"x-request-id", request_id.encode())

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            key = (template, method, status)
            observe = self._observe.get(key)
            if observe is None:
                observe = self.metrics.requests.labels(template, method, str(status)).observe
                if len(self._observe) < self.MAX_SERIES:
                    self._observe[key] = observe
            observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                path = redact_path(scope["path"])
                client = scope.get("client")
                info_line(
                    access_log,
                    f"{method} {path} {status} {elapsed * 1000:.1f}ms",
                    {
                        "method": method,
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


# For what is neither a page nor data a browser only reads (CSV, text, anything else): if
# opened as a document, it may load nothing and be framed by no one.
RESOURCE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)
HSTS = "max-age=31536000; includeSubDomains"
# JSON and scripts are never rendered as a document (nosniff stops a browser from guessing
# otherwise), so the headers that only a document obeys (its policy, framing, referrer,
# permissions, opener) would be bytes on every API answer and page view for nothing.
DATA_TYPES = (b"application/json", b"text/javascript", b"application/javascript")


class SecurityHeadersMiddleware:
    """Security headers on every response, and a fresh CSP nonce for every page.

    Pages get the full set and their policy; JSON and scripts (and 304s, which only
    confirm a cached answer) get what applies to them: ``nosniff``, and HSTS over HTTPS.
    The nonce (`csp_nonce`) goes into the request's state, where ``page()`` hands it to
    the templates for their ``<style>`` and ``<script>`` tags, and into the page's
    policy. A route that needs another policy sets its own header, built with
    ``content_security_policy``.
    """

    PAGE, RESOURCE, DATA = 0, 1, 2

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        always = [(b"x-content-type-options", b"nosniff")]
        if https:  # Strict-Transport-Security only when served over HTTPS
            always.append((b"strict-transport-security", HSTS.encode()))
        documents = [
            *always,
            (b"referrer-policy", b"no-referrer"),
            (b"permissions-policy", PERMISSIONS_POLICY.encode()),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        # Added where the response has not set its own; pages also get their policy.
        self._headers = {
            self.PAGE: [*documents, (b"x-frame-options", b"DENY")],
            self.RESOURCE: [*documents, (b"content-security-policy", RESOURCE_CSP.encode())],
            self.DATA: always,
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
                present = {name for name, _ in raw}  # ASGI: names are lowercase
                kind = self.DATA if message["status"] == 304 else self.RESOURCE
                if kind != self.DATA and b"content-type" in present:
                    for name, value in raw:
                        if name == b"content-type":
                            if value.startswith(b"text/html"):
                                kind = self.PAGE
                            elif value.startswith(DATA_TYPES):
                                kind = self.DATA
                            break
                for header in self._headers[kind]:
                    if header[0] not in present:
                        raw.append(header)
                if kind == self.PAGE and b"content-security-policy" not in present:
                    policy = content_security_policy(csp_nonce(scope))
                    raw.append((b"content-security-policy", policy.encode()))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, add_headers)
