"""A webhook receiver on loopback for the tests: real HTTP, and faults on a share of
attempts (500s, answers that never come, connections dropped, or not listening at all)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook

__all__ = ["Attempt", "Receiver"]


@dataclass
class Attempt:
    headers: dict[str, str]
    body: bytes
    answer: str  # what the receiver did: ok, 500, 410, hang, drop

    @property
    def msg_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def verified(self, secret: str) -> Any:
        """The payload, verified with the reference library (raises if not authentic)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    """``plan(n, tries)`` says what to do with the n-th request (0-based), the ``tries``-th
    of its webhook-id: ok, 500, 410, hang, drop. By default: ok. ``port`` is fixed at
    start, so it can stop and start again."""

    plan: Callable[[int, int], str] = lambda n, tries: "ok"
    port: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _hanging: list[asyncio.Event] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for event in self._hanging:
            event.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, _, value = line.partition(":")
                    headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            msg_id = headers.get("webhook-id", "")
            tries = sum(1 for a in self.attempts if a.msg_id == msg_id)
            answer = self.plan(len(self.attempts), tries)
            self.attempts.append(Attempt(headers, body, answer))
            if answer == "drop":
                writer.transport.abort()
                return
            if answer == "hang":
                event = asyncio.Event()
                self._hanging.append(event)
                await event.wait()
                return
            status = {"ok": "200 OK", "500": "500 Internal Server Error", "410": "410 Gone"}
            text = b"thanks" if answer == "ok" else b"not now"
            writer.write(
                f"HTTP/1.1 {status[answer]}\r\nContent-Length: {len(text)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + text
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def delivered(self, secret: str) -> dict[str, Any]:
        """{webhook-id: payload} of the attempts answered 2xx, each verified; a receiver
        de-duplicates by id like this."""
        found: dict[str, Any] = {}
        for attempt in self.attempts:
            if attempt.answer == "ok":
                found[attempt.msg_id] = attempt.verified(secret)
        return found

    async def wait_for(self, secret: str, count: int, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until ``count`` distinct events have been delivered."""
        deadline = time.monotonic() + timeout
        while len(found := self.delivered(secret)) < count:
            if time.monotonic() > deadline:
                kinds = sorted(p["type"] for p in found.values())
                raise AssertionError(f"{len(found)} of {count} events arrived: {kinds}")
            await asyncio.sleep(0.02)
        return found


def faulty(seed: int, ok_share: float = 0.5, most: int = 3) -> Callable[[int, int], str]:
    """A plan that answers ok to ``ok_share`` of requests and 500, hang or drop to the
    rest, and ok to the ``most``-th try of an id at the latest (retries back off
    exponentially: a test must not wait for the tenth)."""
    rng = random.Random(seed)

    def plan(n: int, tries: int) -> str:
        if tries >= most or rng.random() < ok_share:
            return "ok"
        return rng.choice(["500", "hang", "drop"])

    return plan


def types(found: dict[str, Any]) -> list[str]:
    return sorted(p["type"] for p in found.values())


def payloads(found: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [p for p in found.values() if p["type"] == kind]


__all__ += ["faulty", "payloads", "types"]
