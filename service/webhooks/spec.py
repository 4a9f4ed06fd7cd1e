"""The webhooks' part of the OpenAPI document: the admin operations on endpoints and the
``webhooks`` section (what a receiver is sent). ``service.web.openapi`` puts it in."""

from __future__ import annotations

from typing import Any

from service.webhooks.events import EVENT_TYPES, TEST

__all__ = ["OPERATIONS", "SCHEMAS", "WEBHOOKS"]

ERROR = {"$ref": "#/components/schemas/Error"}
STRING = {"type": "string"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
ENDPOINT_ID = {
    "name": "endpoint_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
    "example": 1,
}
EVENT_TYPE = {"type": "string", "enum": list(EVENT_TYPES)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **optional}}


NOT_FOUND = {"404": _error("No such webhook endpoint.")}

SCHEMAS: dict[str, Any] = {
    "WebhookEndpoint": _object(
        {
            "id": {"type": "integer"},
            "url": STRING,
            "description": STRING,
            "events": {"type": "array", "items": EVENT_TYPE},
            "lists": {
                "type": "array",
                "items": STRING,
                "description": "List slugs; empty: every list.",
            },
            "status": {"type": "string", "enum": ["active", "paused", "disabled"]},
            "status_reason": {
                "type": "string",
                "description": "Why it is paused or disabled (empty when active).",
            },
            "failures": {"type": "integer", "description": "Failed attempts in a row."},
            "created_at": {"type": "string", "format": "date-time"},
            "queued": {"type": "integer"},
            "delivered": {"type": "integer"},
            "failed": {"type": "integer"},
            "rotating_until": {
                **TIME_OR_NULL,
                "description": "Until when the previous secret signs too, after a rotation.",
            },
        }
    ),
    "WebhookDelivery": _object(
        {
            "id": {"type": "integer"},
            "msg_id": {"type": "string", "description": "The webhook-id header of every attempt."},
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "sending", "delivered", "failed"]},
            "attempts": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "last_attempt_at": TIME_OR_NULL,
            "next_attempt_at": TIME_OR_NULL,
            "response_status": {"type": ["integer", "null"]},
            "response_body": {
                "type": ["string", "null"],
                "description": "The start of the last answer, or why there was none.",
            },
        }
    ),
    "WebhookSubscriber": _object(
        {
            "id": {"type": "integer"},
            "email": {"type": "string", "format": "email"},
            "name": {"type": ["string", "null"]},
            "attributes": {"type": "object"},
        }
    ),
    "WebhookSubscription": _object(
        {
            "id": {"type": "integer"},
            "list": STRING,
            "list_name": STRING,
            "status": {"type": "string", "enum": ["pending", "confirmed", "unsubscribed"]},
            "subscribed_at": TIME_OR_NULL,
            "confirmed_at": TIME_OR_NULL,
            "unsubscribed_at": TIME_OR_NULL,
        }
    ),
}

_WITH_SECRET = {
    "allOf": [
        _ref("WebhookEndpoint"),
        _object({"secret": {"type": "string", "pattern": "^whsec_", "description": "Shown once."}}),
    ]
}

OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "/api/v1/admin/webhooks": {
        "get": {
            "summary": "Webhook endpoints, and the event types they can take",
            "responses": {
                "200": _json(
                    _object(
                        {
                            "endpoints": {"type": "array", "items": _ref("WebhookEndpoint")},
                            "event_types": {"type": "object", "additionalProperties": STRING},
                        }
                    )
                )
            },
        },
        "post": {
            "summary": "Add a webhook endpoint",
            "description": "The answer carries the signing secret, the only time it is "
            "shown. Targets on loopback, private or link-local addresses are refused "
            "unless NEWSLETTER_WEBHOOK_ALLOW_PRIVATE is on.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object(
                            {"url": {"type": "string", "format": "uri", "maxLength": 2048}},
                            events={
                                "type": "array",
                                "items": EVENT_TYPE,
                                "description": "Default: all but subscription.pending.",
                            },
                            lists={
                                "type": "array",
                                "items": STRING,
                                "description": "List slugs; default: every list.",
                            },
                            description={"type": "string", "maxLength": 200},
                        )
                    }
                },
            },
            "responses": {"201": _json(_WITH_SECRET, "Added.")},
        },
    },
    "/api/v1/admin/webhooks/{endpoint_id}": {
        "get": {
            "summary": "One webhook endpoint (never its secret)",
            "parameters": [ENDPOINT_ID],
            "responses": {"200": _json(_ref("WebhookEndpoint")), **NOT_FOUND},
        },
        "delete": {
            "summary": "Remove a webhook endpoint and its deliveries",
            "parameters": [ENDPOINT_ID],
            "responses": {"204": {"description": "Removed."}, **NOT_FOUND},
        },
    },
    "/api/v1/admin/webhooks/{endpoint_id}/deliveries": {
        "get": {
            "summary": "A webhook endpoint's deliveries, newest first",
            "parameters": [
                ENDPOINT_ID,
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                },
            ],
            "responses": {
                "200": _json(
                    _object(
                        {
                            "items": {"type": "array", "items": _ref("WebhookDelivery")},
                            "next_before": {"type": ["integer", "null"]},
                        }
                    )
                ),
                **NOT_FOUND,
            },
        }
    },
    "/api/v1/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver": {
        "post": {
            "summary": "Send a delivery again now, with the same webhook-id",
            "parameters": [
                ENDPOINT_ID,
                {
                    "name": "delivery_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "responses": {
                "202": _json(_object({"delivery_id": {"type": "integer"}, "status": STRING})),
                "404": _error("No such delivery, or it is being sent right now."),
            },
        }
    },
}

_ACTIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    "pause": ("Pause a webhook endpoint: its events wait", _ref("WebhookEndpoint"), "200"),
    "resume": (
        "Resume a webhook endpoint (also one paused after failures or disabled by 410 Gone); "
        "waiting events go out at once",
        _ref("WebhookEndpoint"),
        "200",
    ),
    "rotate": (
        "A new signing secret, shown once; the previous one signs too for 24 hours",
        _WITH_SECRET,
        "200",
    ),
    "test": (
        f"Queue a {TEST} event for this endpoint alone",
        _object({"delivery_id": {"type": "integer"}}),
        "202",
    ),
}
for _action, (_summary, _schema, _status) in _ACTIONS.items():
    OPERATIONS[f"/api/v1/admin/webhooks/{{endpoint_id}}/{_action}"] = {
        "post": {
            "summary": _summary,
            "parameters": [ENDPOINT_ID],
            "responses": {_status: _json(_schema), **NOT_FOUND},
        }
    }

_HEADERS = {
    name: {"required": True, "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("webhook-id", "The event's id: the same on every retry; drop repeats by it."),
        ("webhook-timestamp", "Seconds since the epoch, of this attempt."),
        (
            "webhook-signature",
            "v1,BASE64 HMAC-SHA256 of id.timestamp.body; two, space-separated, while a "
            "secret is being rotated.",
        ),
    )
}


def _event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    body = _object(
        {
            "type": {"const": kind},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": data,
        }
    )
    return {
        "post": {
            "summary": EVENT_TYPES.get(kind, "A test event, sent from the admin."),
            "parameters": [
                {"name": name, "in": "header", **spec} for name, spec in _HEADERS.items()
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "Any 2xx: delivered."},
                "410": {"description": "Gone: the endpoint is disabled, nothing more is sent."},
            },
        }
    }


_SUBSCRIPTION_DATA = _object(
    {"subscriber": _ref("WebhookSubscriber"), "subscription": _ref("WebhookSubscription")},
    method={"type": "string", "enum": ["link", "one-click", "admin", "import"]},
)

WEBHOOKS: dict[str, Any] = {
    "subscription.pending": _event("subscription.pending", _SUBSCRIPTION_DATA),
    "subscription.confirmed": _event("subscription.confirmed", _SUBSCRIPTION_DATA),
    "subscription.unsubscribed": _event("subscription.unsubscribed", _SUBSCRIPTION_DATA),
    "subscriber.updated": _event(
        "subscriber.updated",
        _object(
            {
                "subscriber": _ref("WebhookSubscriber"),
                "lists": {
                    "type": "array",
                    "items": _object({"list": STRING, "status": STRING}),
                },
            }
        ),
    ),
    "subscriber.erased": _event(
        "subscriber.erased",
        _object(
            {
                "subscriber": _object({"id": {"type": "integer"}}),
                "lists": {"type": "array", "items": STRING},
            }
        ),
    ),
    TEST: _event(TEST, _object({"message": STRING, "endpoint_id": {"type": "integer"}})),
}
