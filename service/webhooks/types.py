"""The webhook event types: names and what each means (no imports, so the command line
can offer them without loading the database)."""

from __future__ import annotations

__all__ = [
    "CONFIRMED",
    "DEFAULT_EVENTS",
    "ERASED",
    "EVENT_TYPES",
    "PENDING",
    "TEST",
    "UNSUBSCRIBED",
    "UPDATED",
]

PENDING = "subscription.pending"
CONFIRMED = "subscription.confirmed"
UNSUBSCRIBED = "subscription.unsubscribed"
UPDATED = "subscriber.updated"
ERASED = "subscriber.erased"
TEST = "webhook.test"

EVENT_TYPES: dict[str, str] = {
    PENDING: "A signup is waiting for confirmation: a confirmation email was queued "
    "(only sent to endpoints that ask for it).",
    CONFIRMED: "A subscription was confirmed (from the emailed link, a single opt-in "
    "signup, or an import on the admin's word).",
    UNSUBSCRIBED: "A subscription ended; data.method says how: link, one-click, admin, import.",
    UPDATED: "A subscriber's name or attributes changed.",
    ERASED: "A person was erased; the payload carries only their id and their lists.",
}
DEFAULT_EVENTS = (CONFIRMED, UNSUBSCRIBED, UPDATED, ERASED)
