"""Webhook endpoints as the admin pages, the admin API and the CLI manage them.

The secret is returned when an endpoint is added and when it is rotated, and never again.
A rotation keeps the previous secret signing for a day (``ROTATION_GRACE``), so receivers
can switch without losing an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import case, delete, func, select, update

from service.db import Database
from service.models import MailingList, WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from service.webhooks import events, signing
from service.webhooks.targets import UnsafeTarget, check_url, resolve

__all__ = [
    "ROTATION_GRACE",
    "Added",
    "DeliveryRow",
    "EndpointView",
    "UnsafeTarget",
    "add",
    "deliveries",
    "get",
    "list_endpoints",
    "redeliver",
    "remove",
    "rotate",
    "send_test",
    "set_paused",
]

ROTATION_GRACE = timedelta(days=1)
MAX_ENDPOINTS = 100


@dataclass(frozen=True)
class EndpointView:
    """An endpoint as shown: never its secret."""

    id: int
    url: str
    description: str
    events: list[str]
    lists: list[str]  # slugs; empty: every list
    status: str
    status_reason: str
    failures: int
    created_at: str
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    rotating_until: str | None = None

    def json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Added:
    endpoint: EndpointView
    secret: str  # shown once


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    msg_id: str
    type: str
    status: str
    attempts: int
    created_at: str
    last_attempt_at: str | None
    next_attempt_at: str | None
    response_status: int | None
    response_body: str | None

    def json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def _slugs(db: Database) -> dict[int, str]:
    async with db.read() as session:
        rows = await session.execute(select(MailingList.id, MailingList.slug))
        return {list_id: slug for list_id, slug in rows}


async def _views(db: Database, only: int | None = None) -> list[EndpointView]:
    slugs = await _slugs(db)
    counts = select(
        WebhookDelivery.endpoint_id,
        func.sum(case((WebhookDelivery.status.in_(["queued", "sending"]), 1), else_=0)),
        func.sum(case((WebhookDelivery.status == "delivered", 1), else_=0)),
        func.sum(case((WebhookDelivery.status == "failed", 1), else_=0)),
    ).group_by(WebhookDelivery.endpoint_id)
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.id)
    if only is not None:
        query = query.where(WebhookEndpoint.id == only)
        counts = counts.where(WebhookDelivery.endpoint_id == only)
    async with db.read() as session:
        found = list((await session.scalars(query)).all())
        tallies = {row[0]: tuple(row[1:]) for row in await session.execute(counts)}
    now = utcnow()
    views = []
    for e in found:
        queued, delivered, failed = tallies.get(e.id, (0, 0, 0))
        rotating = e.old_secret_until if e.old_secret and e.old_secret_until else None
        views.append(
            EndpointView(
                id=e.id,
                url=e.url,
                description=e.description,
                events=list(e.events),
                lists=sorted(slugs[i] for i in e.lists if i in slugs),
                status=e.status,
                status_reason=e.status_reason,
                failures=e.failures,
                created_at=e.created_at.isoformat(),
                queued=int(queued or 0),
                delivered=int(delivered or 0),
                failed=int(failed or 0),
                rotating_until=_iso(rotating) if rotating and rotating > now else None,
            )
        )
    return views


async def list_endpoints(db: Database) -> list[EndpointView]:
    return await _views(db)


async def get(db: Database, endpoint_id: int) -> EndpointView | None:
    found = await _views(db, endpoint_id)
    return found[0] if found else None


def _event_types(wanted: list[str] | None) -> list[str]:
    if not wanted:
        return list(events.DEFAULT_EVENTS)
    unknown = sorted(set(wanted) - set(events.EVENT_TYPES))
    if unknown:
        raise ValueError(
            f"Unknown event type {unknown[0]!r}; the types are: {', '.join(events.EVENT_TYPES)}."
        )
    return [t for t in events.EVENT_TYPES if t in wanted]


async def add(
    db: Database,
    url: str,
    *,
    event_types: list[str] | None = None,
    list_slugs: list[str] | None = None,
    description: str = "",
    allow_private: bool = False,
) -> Added:
    """Add an endpoint; ValueError (or `UnsafeTarget`) says what is wrong."""
    url = check_url(url)
    types = _event_types(event_types)
    description = description.strip()
    if len(description) > 200:
        raise ValueError("The description is longer than 200 characters.")
    ids_by_slug = {slug: i for i, slug in (await _slugs(db)).items()}
    list_ids = []
    for slug in list_slugs or []:
        if slug not in ids_by_slug:
            raise ValueError(f"There is no list {slug!r}.")
        list_ids.append(ids_by_slug[slug])
    await resolve(url, allow_private=allow_private, unresolved_ok=True)
    secret = signing.new_secret()
    async with db.write() as session:
        count = await session.scalar(select(func.count()).select_from(WebhookEndpoint))
        if (count or 0) >= MAX_ENDPOINTS:
            raise ValueError(f"There are {MAX_ENDPOINTS} endpoints already; remove one first.")
        endpoint = WebhookEndpoint(
            url=url,
            description=description,
            events=types,
            lists=sorted(set(list_ids)),
            secret=secret,
            status="active",
            status_reason="",
            failures=0,
            created_at=utcnow(),
        )
        session.add(endpoint)
        await session.flush()
        endpoint_id = endpoint.id
    view = await get(db, endpoint_id)
    assert view is not None
    return Added(view, secret)


async def remove(db: Database, endpoint_id: int) -> bool:
    async with db.write() as session:
        await session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        )
        gone = await session.execute(
            delete(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .returning(WebhookEndpoint.id)
        )
        return gone.first() is not None


async def set_paused(db: Database, endpoint_id: int, paused: bool, admin: str) -> bool:
    """Pause (deliveries wait) or resume (also a disabled or automatically paused one)."""
    now = utcnow()
    values: dict[str, Any] = (
        {
            "status": "paused",
            "status_reason": f"Paused by admin {admin} on {now:%Y-%m-%d %H:%M} UTC.",
        }
        if paused
        else {"status": "active", "status_reason": "", "failures": 0}
    )
    async with db.write() as session:
        changed = await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(**values)
            .returning(WebhookEndpoint.id)
        )
        if changed.first() is None:
            return False
        if not paused:  # what waited goes now, not at its backed-off time
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .where(WebhookDelivery.status == "queued")
                .values(next_attempt_at=now)
            )
    return True


async def rotate(db: Database, endpoint_id: int) -> str | None:
    """A new secret (returned, shown once); the previous one signs too for a day."""
    secret = signing.new_secret()
    async with db.write() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
        if endpoint is None:
            return None
        endpoint.old_secret = endpoint.secret
        endpoint.old_secret_until = utcnow() + ROTATION_GRACE
        endpoint.secret = secret
    return secret


async def send_test(db: Database, endpoint_id: int) -> int | None:
    """Queue a ``webhook.test`` event for this endpoint alone; its delivery's id."""
    now = utcnow()
    async with db.write() as session:
        if await session.get(WebhookEndpoint, endpoint_id) is None:
            return None
        data = {"message": "A test event, sent from the admin.", "endpoint_id": endpoint_id}
        await events.store(session, [(events.TEST, None, data, [endpoint_id])], now)
        return await session.scalar(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(1)
        )


async def deliveries(
    db: Database, endpoint_id: int, *, before: int | None = None, limit: int = 50
) -> list[DeliveryRow]:
    """The endpoint's deliveries, newest first (keyset: ``id < before``)."""
    query = (
        select(WebhookDelivery, WebhookEvent.msg_id, WebhookEvent.type)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [
        DeliveryRow(
            id=d.id,
            msg_id=msg_id,
            type=event_type,
            status=d.status,
            attempts=d.attempts,
            created_at=d.created_at.isoformat(),
            last_attempt_at=_iso(d.last_attempt_at),
            next_attempt_at=_iso(d.next_attempt_at) if d.status == "queued" else None,
            response_status=d.response_status,
            response_body=d.response_body,
        )
        for d, msg_id, event_type in rows
    ]


async def redeliver(db: Database, endpoint_id: int, delivery_id: int) -> bool:
    """Send a delivery again now, with the same ``webhook-id``; its retry deadline starts
    again. One being sent right now is left to finish."""
    now = utcnow()
    async with db.write() as session:
        changed = await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .where(WebhookDelivery.status != "sending")
            .values(status="queued", next_attempt_at=now, created_at=now, lease_until=None)
            .returning(WebhookDelivery.id)
        )
        return changed.first() is not None
