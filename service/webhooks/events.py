"""Events, written in the same transaction as the change they tell of.

Each function takes the rows a change touched (subscription ids, subscriber ids), so a
batch of changes costs a few statements whatever its size: one read of the endpoints
(nothing more when none wants the event), one read of the rows, one insert of events and
one of deliveries. An event is stored with its payload as it is at that moment, and a
delivery row for each endpoint that wants it (its event types, its lists).

The payload of ``subscriber.erased`` carries no personal data (the subscriber's id and
the lists' slugs), and erasing a person deletes every stored event about them, delivered
or not.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Write, Writes
from service.models import (
    MailingList,
    Subscriber,
    Subscription,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from service.webhooks.types import (
    CONFIRMED,
    DEFAULT_EVENTS,
    ERASED,
    EVENT_TYPES,
    PENDING,
    TEST,
    UNSUBSCRIBED,
    UPDATED,
)

__all__ = [
    "CONFIRMED",
    "DEFAULT_EVENTS",
    "ERASED",
    "EVENT_TYPES",
    "PENDING",
    "TEST",
    "UNSUBSCRIBED",
    "UPDATED",
    "erased",
    "new_msg_id",
    "people_changed",
    "store",
    "subscriptions_changed",
    "subscriptions_changed_in_batch",
]


def new_msg_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def _when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


async def _wanting(session: AsyncSession, event_type: str) -> list[tuple[int, set[int]]]:
    """The endpoints (id, list ids; empty: all) that take ``event_type``."""
    rows = await session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events, WebhookEndpoint.lists).where(
            WebhookEndpoint.status != "disabled"
        )
    )
    return [(eid, set(lists or ())) for eid, events, lists in rows if event_type in events]


def _targets(endpoints: list[tuple[int, set[int]]], list_ids: Collection[int]) -> list[int]:
    return [eid for eid, lists in endpoints if not lists or lists.intersection(list_ids)]


def _person(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "name": subscriber.name,
        "attributes": subscriber.attributes or {},
    }


def _subscription(sub: Subscription, mailing_list: MailingList) -> dict[str, Any]:
    return {
        "id": sub.id,
        "list": mailing_list.slug,
        "list_name": mailing_list.name,
        "status": str(sub.status),
        "subscribed_at": _when(sub.subscribed_at),
        "confirmed_at": _when(sub.confirmed_at),
        "unsubscribed_at": _when(sub.unsubscribed_at),
    }


async def store(
    session: AsyncSession,
    found: Iterable[tuple[str, int | None, dict[str, Any], list[int]]],
    now: datetime,
) -> int:
    """Write events (type, subscriber id, data, endpoint ids) and their deliveries; how
    many events."""
    events: list[tuple[WebhookEvent, list[int]]] = []
    for event_type, subscriber_id, data, targets in found:
        if not targets:
            continue
        payload = {"type": event_type, "timestamp": _when(now), "data": data}
        event = WebhookEvent(
            msg_id=new_msg_id(),
            type=event_type,
            subscriber_id=subscriber_id,
            payload=payload,
            created_at=now,
        )
        events.append((event, targets))
    if not events:
        return 0
    session.add_all([event for event, _ in events])
    await session.flush()
    await session.execute(
        insert(WebhookDelivery),
        [
            {
                "event_id": event.id,
                "endpoint_id": endpoint_id,
                "status": "queued",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for event, targets in events
            for endpoint_id in targets
        ],
    )
    return len(events)


async def subscriptions_changed(
    session: AsyncSession,
    event_type: str,
    subscription_ids: Collection[int],
    now: datetime,
    *,
    method: str = "",
) -> int:
    """Tell of these subscriptions' new state (``event_type``); ``method``: how it came
    about, for the payload. How many events were written."""
    if not subscription_ids:
        return 0
    endpoints = await _wanting(session, event_type)
    if not endpoints:
        return 0
    rows = await session.execute(
        select(Subscription, Subscriber, MailingList)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscription.id.in_(list(subscription_ids)))
        .order_by(Subscription.id)
    )
    found = []
    for sub, person, mailing_list in rows:
        data: dict[str, Any] = {
            "subscriber": _person(person),
            "subscription": _subscription(sub, mailing_list),
        }
        if method:
            data["method"] = method
        found.append((event_type, person.id, data, _targets(endpoints, [mailing_list.id])))
    return await store(session, found, now)


async def _memberships(
    session: AsyncSession, subscriber_ids: Collection[int]
) -> dict[int, list[tuple[int, str, str]]]:
    """{subscriber id: [(list id, slug, status)]}."""
    rows = await session.execute(
        select(Subscription.subscriber_id, MailingList.id, MailingList.slug, Subscription.status)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscription.subscriber_id.in_(list(subscriber_ids)))
        .order_by(MailingList.slug)
    )
    found: dict[int, list[tuple[int, str, str]]] = {}
    for subscriber_id, list_id, slug, status in rows:
        found.setdefault(subscriber_id, []).append((list_id, slug, str(status)))
    return found


async def people_changed(
    session: AsyncSession, subscriber_ids: Collection[int], now: datetime
) -> int:
    """Tell of these subscribers' new name or attributes."""
    if not subscriber_ids:
        return 0
    endpoints = await _wanting(session, UPDATED)
    if not endpoints:
        return 0
    lists = await _memberships(session, subscriber_ids)
    people = await session.scalars(
        select(Subscriber).where(Subscriber.id.in_(list(subscriber_ids))).order_by(Subscriber.id)
    )
    found = []
    for person in people:
        mine = lists.get(person.id, [])
        data = {
            "subscriber": _person(person),
            "lists": [{"list": slug, "status": status} for _, slug, status in mine],
        }
        targets = _targets(endpoints, [list_id for list_id, _, _ in mine])
        found.append((UPDATED, person.id, data, targets))
    return await store(session, found, now)


async def erased(session: AsyncSession, subscriber_id: int, now: datetime) -> int:
    """Before a person's rows are deleted: delete every event about them and tell of the
    erasure, with no personal data."""
    stored = select(WebhookEvent.id).where(WebhookEvent.subscriber_id == subscriber_id)
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(stored)))
    await session.execute(delete(WebhookEvent).where(WebhookEvent.subscriber_id == subscriber_id))
    endpoints = await _wanting(session, ERASED)
    if not endpoints:
        return 0
    mine = (await _memberships(session, [subscriber_id])).get(subscriber_id, [])
    data = {"subscriber": {"id": subscriber_id}, "lists": [slug for _, slug, _ in mine]}
    targets = _targets(endpoints, [list_id for list_id, _, _ in mine])
    # Kept without the subscriber id: a later erasure has nothing of theirs to find here.
    return await store(session, [(ERASED, None, data, targets)], now)


# The same as `subscriptions_changed`, as statements of a batch (`service.db.batch`): the
# worker acts on signups in one, where there is no ORM session. Built once.
_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.events, WebhookEndpoint.lists).where(
    WebhookEndpoint.status != "disabled"
)
_STATE = (
    select(
        Subscription.id,
        Subscription.status,
        Subscription.subscribed_at,
        Subscription.confirmed_at,
        Subscription.unsubscribed_at,
        Subscriber.id.label("person_id"),
        Subscriber.email,
        Subscriber.name,
        Subscriber.attributes,
        MailingList.id.label("list_id"),
        MailingList.slug,
        MailingList.name.label("list_name"),
    )
    .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
    .join(MailingList, MailingList.id == Subscription.list_id)
    .where(Subscription.id.in_(bindparam("ids", expanding=True)))
    .order_by(Subscription.id)
)
_EVENT_IDS = select(WebhookEvent.id, WebhookEvent.msg_id).where(
    WebhookEvent.msg_id.in_(bindparam("ids", expanding=True))
)


def subscriptions_changed_in_batch(
    event_type: str, subscription_ids: Collection[int], now: datetime, *, method: str = ""
) -> Writes[int]:
    """`subscriptions_changed` in a batch: one read when no endpoint wants the event."""
    if not subscription_ids:
        return 0
    endpoints = [
        (row.id, set(row.lists or ()))
        for row in (yield Write(_ENDPOINTS))
        if event_type in (row.events or ())
    ]
    if not endpoints:
        return 0
    rows: list[dict[str, Any]] = []
    targets: dict[str, list[int]] = {}
    for row in (yield Write(_STATE, {"ids": sorted(subscription_ids)})):
        wanting = _targets(endpoints, [row.list_id])
        if not wanting:
            continue
        data: dict[str, Any] = {
            "subscriber": {
                "id": row.person_id,
                "email": row.email,
                "name": row.name,
                "attributes": row.attributes or {},
            },
            "subscription": {
                "id": row.id,
                "list": row.slug,
                "list_name": row.list_name,
                "status": str(row.status),
                "subscribed_at": _when(row.subscribed_at),
                "confirmed_at": _when(row.confirmed_at),
                "unsubscribed_at": _when(row.unsubscribed_at),
            },
        }
        if method:
            data["method"] = method
        msg_id = new_msg_id()
        targets[msg_id] = wanting
        rows.append(
            {
                "msg_id": msg_id,
                "type": event_type,
                "subscriber_id": row.person_id,
                "payload": {"type": event_type, "timestamp": _when(now), "data": data},
                "created_at": now,
            }
        )
    if not rows:
        return 0
    yield Write(insert(WebhookEvent), rows)
    ids = {row.msg_id: row.id for row in (yield Write(_EVENT_IDS, {"ids": list(targets)}))}
    yield Write(
        insert(WebhookDelivery),
        [
            {
                "event_id": ids[msg_id],
                "endpoint_id": endpoint_id,
                "status": "queued",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for msg_id, wanting in targets.items()
            for endpoint_id in wanting
        ],
    )
    return len(rows)
