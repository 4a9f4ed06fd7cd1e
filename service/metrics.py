"""Prometheus metrics: what happened in this process, and the outbox as the database sees it.

Each app gets its own registry (no module-level collectors), so two apps in one process,
as in the tests, never share counts. Counters are per process, as Prometheus expects: it
scrapes every instance and sums. The outbox gauges are read from the database at scrape
time, so every instance reports the same shared queue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select

from service.db import Database
from service.mail.senders import DeliveryError, Mailer
from service.models import OutboxMessage, OutboxStatus, SignupRequest

__all__ = ["CONTENT_TYPE", "CountingMailer", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.subscribes = Counter(
            "newsletter_subscribes",
            "Signups accepted (202) by the public API and forms, by list.",
            ["list"],
            registry=r,
        )
        self.signups_dropped = Counter(
            "newsletter_signups_dropped",
            "Signups answered like any other but dropped or not sent, by reason (honeypot, "
            "inbox-limit).",
            ["reason"],
            registry=r,
        )
        self.signups_challenged = Counter(
            "newsletter_signups_challenged",
            "Signups asked for a proof of work before being taken, by reason (no-stamp, "
            "bad-stamp, old-stamp, reused-stamp, too-fast, surge: a flood makes every signup pay).",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "newsletter_rate_limited",
            "Signups refused with 429, by limit (client address, list).",
            ["limit"],
            registry=r,
        )
        self.confirms = Counter(
            "newsletter_confirms", "Subscriptions confirmed from an emailed link.", registry=r
        )
        self.unsubscribes = Counter(
            "newsletter_unsubscribes",
            "Unsubscribes, by how (one-click from the mail provider, page, admin).",
            ["method"],
            registry=r,
        )
        self.send_attempts = Counter(
            "newsletter_send_attempts",
            "Delivery attempts by this process's worker: sent, retry (temporary failure), "
            "failed (permanent), error (unexpected).",
            ["result"],
            registry=r,
        )
        self.requests = Histogram(
            "newsletter_http_request_duration_seconds",
            "Time to answer HTTP requests, by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.signups_waiting = Gauge(
            "newsletter_signups_waiting",
            "Signups taken in and not yet acted on by a worker (all processes).",
            registry=r,
        )
        self.signups_age = Gauge(
            "newsletter_signups_oldest_age_seconds",
            "Age of the oldest signup not yet acted on; 0 when there is none.",
            registry=r,
        )
        self.outbox_depth = Gauge(
            "newsletter_outbox_depth",
            "Emails queued or being sent, not yet delivered or failed (all processes).",
            registry=r,
        )
        self.outbox_age = Gauge(
            "newsletter_outbox_oldest_age_seconds",
            "Age of the oldest email not yet delivered or failed; 0 when there is none.",
            registry=r,
        )

    async def render(self, db: Database) -> bytes:
        async with db.read() as session:
            waiting, first = (
                await session.execute(select(func.count(), func.min(SignupRequest.received_at)))
            ).one()
            depth, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxMessage.created_at)).where(
                        OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.SENDING])
                    )
                )
            ).one()
        self.signups_waiting.set(waiting)
        self.signups_age.set(_age(first))
        self.outbox_depth.set(depth)
        self.outbox_age.set(_age(oldest))
        return generate_latest(self.registry)


def _age(since: datetime | None) -> float:
    return max((datetime.now(UTC) - since).total_seconds(), 0.0) if since else 0.0


class CountingMailer:
    """Counts each delivery attempt by result, around any mailer."""

    def __init__(self, inner: Mailer, metrics: Metrics) -> None:
        self._inner = inner
        self._attempts = metrics.send_attempts

    async def send(self, message: EmailMessage) -> None:
        try:
            await self._inner.send(message)
        except DeliveryError as exc:
            self._attempts.labels("failed" if exc.permanent else "retry").inc()
            raise
        except Exception:
            self._attempts.labels("error").inc()
            raise
        self._attempts.labels("sent").inc()

    @property
    def smtputf8(self) -> bool | None:
        return self._inner.smtputf8

    async def probe(self) -> None:
        await self._inner.probe()

    async def close(self) -> None:
        await self._inner.close()
