"""A webhook receiver for ``newsletter demo --webhook-receiver``: it verifies each request's
signature as any Standard Webhooks receiver would, prints the event, and lists what
arrived at its own address, so a newcomer sees a signup arrive."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from html import escape
from typing import Any

from service.loopback import LoopbackServer, QuietHandler
from service.webhooks.signing import signature

__all__ = ["DemoReceiver", "verify"]

TOLERANCE = 300  # seconds a timestamp may be off, as the specification suggests


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    """Whether the request carries a valid, fresh signature under ``secret``."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit():
        return False
    if abs((now if now is not None else time.time()) - int(stamp)) > TOLERANCE:
        return False
    expected = signature(secret, msg_id, int(stamp), body)
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, sig) for sig in offered)


def _summary(payload: dict[str, Any]) -> str:
    data = payload.get("data") or {}
    who = (data.get("subscriber") or {}).get("email") or ""
    where = (data.get("subscription") or {}).get("list") or ""
    how = data.get("method") or ""
    return " ".join(part for part in (payload.get("type", "?"), who, where, how) if part)


class DemoReceiver(LoopbackServer):
    """Serves POST (events) and GET (what arrived) on 127.0.0.1 from a thread."""

    def __init__(self, port: int = 0, *, say: Callable[[str], None] = print) -> None:
        self.secret = ""
        self.received: list[tuple[str, bool, str]] = []  # (webhook-id, verified, summary)
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(min(length, 1_000_000))
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = bool(receiver.secret) and verify(receiver.secret, headers, body)
                try:
                    summary = _summary(json.loads(body))
                except (ValueError, AttributeError):
                    summary = "(not JSON)"
                receiver.received.append((headers.get("webhook-id", ""), ok, summary))
                say(f"  webhook {'verified' if ok else 'NOT VERIFIED'}: {summary}")
                self.send_response(204 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                rows = "".join(
                    f"<li>{'✔' if ok else '✘'} {escape(summary)} <small>{escape(msg_id)}</small>"
                    for msg_id, ok, summary in reversed(receiver.received)
                )
                page = (
                    "<!DOCTYPE html><meta charset=utf-8><title>Webhooks received</title>"
                    "<h1>Webhooks received</h1><p>Newest first; reload to see more.</p>"
                    f"<ul>{rows or '<li>None yet: confirm a signup.'}</ul>"
                ).encode()
                self.send_page(page)

        super().__init__(Handler, port)
