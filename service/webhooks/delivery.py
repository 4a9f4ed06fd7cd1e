"""The worker's webhook step: send due deliveries, signed; retry; pause what keeps failing.

At least once, with the same ``webhook-id`` on every attempt (a new timestamp and
signature each time). A batch is claimed with a lease (``UPDATE ... RETURNING``; on
PostgreSQL ``FOR UPDATE SKIP LOCKED``, so workers share the queue); a worker that dies
leaves rows whose lease runs out, and the next claim takes them again. Nothing stays in
a transaction while a request is out: the answer is recorded after it.

- A 2xx answer is delivered. 410 Gone disables the endpoint (no more events are queued
  for it). Anything else, a timeout (``NEWSLETTER_WEBHOOK_TIMEOUT``), a refused
  connection or an unsafe address is a failed attempt: retried after an exponential
  delay with full jitter (from ``NEWSLETTER_WEBHOOK_RETRY_BASE``, at most six hours),
  until ``NEWSLETTER_WEBHOOK_RETRY_DEADLINE`` after the event, then marked failed.
- An endpoint that fails ``NEWSLETTER_WEBHOOK_PAUSE_AFTER`` attempts in a row is paused,
  with the reason shown in the admin; its deliveries wait until it is resumed.
- The step runs a batch in the background, so a receiver that hangs never holds up the
  worker's other steps; the next batch is claimed when this one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Select, and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Database
from service.metrics import Metrics
from service.models import WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from service.settings import Settings
from service.wakeup import Wakeup
from service.webhooks import signing
from service.webhooks.targets import UnsafeTarget, resolve

__all__ = ["WebhookSender", "body_of", "signing_keys"]

log = logging.getLogger(__name__)

BATCH = 50
MAX_DELAY = 6 * 3600.0
KEEP_EVENTS = timedelta(days=30)  # finished events are deleted after this
PURGE_EVERY = 600.0
ANSWER_KEPT = 1000  # characters of an answer kept for the admin


def body_of(payload: dict[str, Any]) -> bytes:
    """The request body: the same bytes on every attempt."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signing_keys(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and the previous one while its rotation's grace lasts."""
    keys = [endpoint.secret]
    if endpoint.old_secret and endpoint.old_secret_until and endpoint.old_secret_until > now:
        keys.append(endpoint.old_secret)
    return keys


class _Outcome:
    __slots__ = ("answer", "status")

    def __init__(self, status: int | None, answer: str) -> None:
        self.status = status
        self.answer = answer[:ANSWER_KEPT]

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """Claims due deliveries and sends them; one batch at a time, in the background."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        metrics: Metrics | None = None,
        wakeup: Wakeup | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._metrics = metrics
        self._wakeup = wakeup
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._batch: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self._stopping = False

    async def step(self) -> int:
        """Claim a batch and start sending it, unless one is still out; how many claimed."""
        if self._batch is not None and not self._batch.done():
            return 0
        if self._batch is not None:
            with contextlib.suppress(Exception):
                self._batch.result()  # already logged
            self._batch = None
        await self._purge_now_and_then()
        claimed = await self._claim(utcnow())
        if claimed:
            self._batch = asyncio.create_task(self._send_all(claimed), name="webhook-batch")
            if self._wakeup is not None:
                # Once it is done (not a moment before), the next batch may be claimed.
                self._batch.add_done_callback(lambda _: self._wake())
        return len(claimed)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def run_once(self) -> int:
        """Claim one batch and send it all before returning (tests, the CLI); how many."""
        claimed = await self._claim(utcnow())
        await self._send_all(claimed)
        return len(claimed)

    async def close(self) -> None:
        """Let the batch in hand finish, then close the connections."""
        self._stopping = True
        if self._batch is not None:
            with contextlib.suppress(Exception):
                await self._batch
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # Claiming --------------------------------------------------------------------------

    async def _claim(self, now: datetime) -> list[WebhookDelivery]:
        due: Select[int] = (
            select(WebhookDelivery.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookEndpoint.status == "active")
            .where(
                or_(
                    and_(
                        WebhookDelivery.status == "queued",
                        WebhookDelivery.next_attempt_at <= now,
                    ),
                    and_(WebhookDelivery.status == "sending", WebhookDelivery.lease_until < now),
                )
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(BATCH)
            # PostgreSQL: rows another worker's claim is taking are skipped, not waited for
            # (SQLite has no such clause: its one write lock keeps claims from overlapping).
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        )
        claim = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due.scalar_subquery()))
            .values(
                status="sending",
                lease_until=now + timedelta(seconds=self._lease),
                attempts=WebhookDelivery.attempts + 1,
            )
            .returning(WebhookDelivery)
            .execution_options(synchronize_session=False)
        )
        async with self._db.write() as session:
            rows = list((await session.scalars(claim)).all())
        rows.sort(key=lambda r: (r.next_attempt_at, r.id))
        return rows

    @property
    def _lease(self) -> float:
        # Never shorter than one attempt can take, or a slow answer would be sent twice.
        return max(self._settings.worker_lease, self._settings.webhook_timeout + 1)

    # Sending ---------------------------------------------------------------------------

    async def _send_all(self, rows: list[WebhookDelivery]) -> None:
        if not rows:
            return
        async with self._db.read() as session:
            events = {
                e.id: e
                for e in await session.scalars(
                    select(WebhookEvent).where(WebhookEvent.id.in_({r.event_id for r in rows}))
                )
            }
            endpoints = {
                e.id: e
                for e in await session.scalars(
                    select(WebhookEndpoint).where(
                        WebhookEndpoint.id.in_({r.endpoint_id for r in rows})
                    )
                )
            }
        waiting = deque(rows)

        async def lane() -> None:
            while waiting and not self._stopping:
                row = waiting.popleft()
                event, endpoint = events.get(row.event_id), endpoints.get(row.endpoint_id)
                if event is None or endpoint is None:
                    continue  # erased or removed meanwhile: the rows went with it
                try:
                    await self._deliver(row, event, endpoint)
                except Exception:
                    log.exception("webhook delivery %s: unexpected error", row.id)
                    self._count("error")

        lanes = min(self._settings.worker_concurrency, len(rows))
        await asyncio.gather(*(lane() for _ in range(lanes)))
        if waiting:  # stopping: hand back what was not tried, without spending an attempt
            await self._release([row.id for row in waiting])

    async def _release(self, ids: list[int]) -> None:
        async with self._db.write() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == "sending")
                .values(status="queued", lease_until=None, attempts=WebhookDelivery.attempts - 1)
            )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._settings.webhook_timeout),
                follow_redirects=False,
                transport=self._transport,
                headers={"user-agent": "newsletter-webhooks/1"},
                trust_env=False,
            )
        return self._client

    async def _attempt(self, event: WebhookEvent, endpoint: WebhookEndpoint) -> _Outcome:
        try:
            await resolve(endpoint.url, allow_private=self._settings.webhook_allow_private)
        except UnsafeTarget as exc:
            return _Outcome(None, str(exc))
        body = body_of(event.payload)
        now = utcnow()
        headers = signing.headers(
            event.msg_id, int(now.timestamp()), body, signing_keys(endpoint, now)
        )
        headers["content-type"] = "application/json"
        try:
            async with asyncio.timeout(self._settings.webhook_timeout):
                response = await self._http().post(endpoint.url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(None, f"no answer within {self._settings.webhook_timeout:g} s")
        except httpx.HTTPError as exc:
            return _Outcome(None, f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
        return _Outcome(response.status_code, response.text)

    async def _deliver(
        self, row: WebhookDelivery, event: WebhookEvent, endpoint: WebhookEndpoint
    ) -> None:
        outcome = await self._attempt(event, endpoint)
        now = utcnow()
        values: dict[str, Any] = {
            "lease_until": None,
            "last_attempt_at": now,
            "response_status": outcome.status,
            "response_body": outcome.answer,
        }
        endpoint_change: dict[str, Any] = {}
        if outcome.delivered:
            values.update(status="delivered", delivered_at=now)
            endpoint_change = {"failures": 0}
            result = "delivered"
        elif outcome.status == 410:
            values.update(status="failed")
            endpoint_change = {
                "status": "disabled",
                "status_reason": f"Disabled on {now:%Y-%m-%d %H:%M} UTC: the receiver answered "
                "410 Gone, which means it wants no more events.",
            }
            result = "disabled"
        else:
            result = self._retry_or_give_up(row, values, now)
        async with self._db.write() as session:
            ours = await session.scalar(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == row.id)
                .where(WebhookDelivery.status == "sending")
                .where(WebhookDelivery.lease_until == row.lease_until)
                .values(**values)
                .returning(WebhookDelivery.id)
            )
            if ours is None:
                log.warning("webhook delivery %s: lease ran out; another worker has it", row.id)
                return
            if outcome.delivered or outcome.status == 410:
                await session.execute(
                    update(WebhookEndpoint)
                    .where(WebhookEndpoint.id == endpoint.id)
                    .values(**endpoint_change)
                )
            else:
                await self._count_failure(session, endpoint.id, outcome, now)
        self._count(result)
        log.info(
            "webhook delivery %s (%s to endpoint %s, attempt %s): %s",
            row.id,
            event.type,
            endpoint.id,
            row.attempts,
            outcome.status or outcome.answer,
        )

    def _retry_or_give_up(self, row: WebhookDelivery, values: dict[str, Any], now: datetime) -> str:
        ceiling = min(MAX_DELAY, self._settings.webhook_retry_base * 2 ** max(row.attempts - 1, 0))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
        next_at = now + timedelta(seconds=delay)
        if next_at - row.created_at > timedelta(seconds=self._settings.webhook_retry_deadline):
            values.update(status="failed")
            return "failed"
        values.update(status="queued", next_attempt_at=next_at)
        return "retry"

    async def _count_failure(
        self, session: AsyncSession, endpoint_id: int, outcome: _Outcome, now: datetime
    ) -> None:
        failures = await session.scalar(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(failures=WebhookEndpoint.failures + 1)
            .returning(WebhookEndpoint.failures)
        )
        limit = self._settings.webhook_pause_after
        if failures is not None and failures >= limit:
            last = f"HTTP {outcome.status}" if outcome.status else outcome.answer
            await session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.status == "active")
                .values(
                    status="paused",
                    status_reason=f"Paused on {now:%Y-%m-%d %H:%M} UTC after {failures} failed "
                    f"attempts in a row (the last: {last}). Deliveries wait; resume it once "
                    "the receiver works.",
                )
            )

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.webhook_attempts.labels(result).inc()

    # Housekeeping ----------------------------------------------------------------------

    async def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = time.monotonic()
        await purge(self._db, utcnow())


async def purge(db: Database, now: datetime) -> int:
    """Delete events older than 30 days that have nothing left to deliver."""
    unfinished = exists(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.event_id == WebhookEvent.id)
        .where(WebhookDelivery.status.in_(["queued", "sending"]))
    )
    old = select(WebhookEvent.id).where(WebhookEvent.created_at < now - KEEP_EVENTS, ~unfinished)
    async with db.write() as session:
        ids = list((await session.scalars(old.limit(1000))).all())
        if not ids:
            return 0
        await session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
        await session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(ids)))
    return len(ids)
