"""The OpenAPI paths and schemas of the admin side's own security: API tokens, admins and
the audit log (``service.web.admin.security_api``).

Kept apart from ``service.web.openapi``, which hands in its helpers, so neither imports
the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.audit import ACTIONS
from service.auth.api_tokens import MAX_EXPIRY_DAYS
from service.auth.roles import ROLES, SCOPES

__all__ = ["paths", "schemas"]

Helper = Callable[..., dict[str, Any]]

STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
SCOPE = {"type": "string", "enum": list(SCOPES)}
ROLE = {"type": "string", "enum": list(ROLES)}
NEEDS_ADMIN = "Needs the `admin` scope (owners only)."


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def paths(admin: Helper, error: Helper, json: Helper) -> dict[str, Any]:
    """The paths, built with ``service.web.openapi``'s own ``_admin``, ``_error``, ``_json``."""
    username = {"name": "username", "in": "path", "required": True, "schema": STRING}
    return {
        "/api/v1/admin/tokens": {
            "get": admin(
                {
                    "summary": "All API tokens, with scopes, expiry and state",
                    "description": NEEDS_ADMIN,
                    "responses": {"200": json(_ref("Tokens"))},
                }
            ),
            "post": admin(
                {
                    "summary": "Make an API token for yourself (shown only in this answer)",
                    "description": NEEDS_ADMIN + " A token never gets a scope its maker "
                    "lacks (403 naming it).",
                    "requestBody": _body(_ref("NewToken")),
                    "responses": {
                        "201": json(_ref("CreatedToken"), "Created."),
                        "409": error("Your account was disabled meanwhile."),
                        "422": error("Invalid name, scopes or expires_in_days (see fields)."),
                    },
                },
                changes=True,
            ),
        },
        "/api/v1/admin/tokens/{token_id}": {
            "delete": admin(
                {
                    "summary": "Revoke a token",
                    "description": NEEDS_ADMIN,
                    "parameters": [
                        {
                            "name": "token_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    ],
                    "responses": {
                        "204": {"description": "Revoked."},
                        "404": error("No active token with that id."),
                    },
                },
                changes=True,
            ),
        },
        "/api/v1/admin/admins": {
            "get": admin(
                {
                    "summary": "All admins",
                    "description": NEEDS_ADMIN,
                    "responses": {"200": json(_ref("Admins"))},
                }
            ),
            "post": admin(
                {
                    "summary": "Add an admin",
                    "description": NEEDS_ADMIN + " The role is editor unless said otherwise.",
                    "requestBody": _body(_ref("NewAdmin")),
                    "responses": {
                        "201": json(_ref("Admin"), "Created."),
                        "409": error("An admin of that name exists."),
                        "422": error("Invalid username, weak password, or unknown role."),
                    },
                },
                changes=True,
            ),
        },
        "/api/v1/admin/admins/{username}": {
            "get": admin(
                {
                    "summary": "One admin",
                    "description": NEEDS_ADMIN,
                    "parameters": [username],
                    "responses": {"200": json(_ref("Admin")), "404": error("No such admin.")},
                }
            ),
            "patch": admin(
                {
                    "summary": "Change an admin's role, or disable or enable them",
                    "description": NEEDS_ADMIN + " Disabling ends the admin's sessions and "
                    "revokes their tokens at once.",
                    "parameters": [username],
                    "requestBody": _body(_ref("AdminChange")),
                    "responses": {
                        "200": json(_ref("Admin")),
                        "404": error("No such admin."),
                        "409": error("That would leave no active owner."),
                        "422": error("Nothing to change, or an invalid role or disabled."),
                    },
                },
                changes=True,
            ),
        },
        "/api/v1/admin/audit": {
            "get": admin(
                {
                    "summary": "The audit log, newest first (JSON pages, or all as CSV)",
                    "description": NEEDS_ADMIN,
                    "parameters": [
                        {"name": name, "in": "query", "required": False, "schema": schema}
                        for name, schema in (
                            ("action", {"type": "string", "enum": list(ACTIONS)}),
                            ("before", {"type": "integer", "minimum": 1}),
                            ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                            ("format", {"type": "string", "enum": ["json", "csv"]}),
                        )
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of entries (JSON), or every entry (CSV).",
                            "content": {
                                "application/json": {"schema": _ref("AuditPage")},
                                "text/csv": {"schema": STRING},
                            },
                        },
                        "422": error("Unknown action or format, or an invalid number."),
                    },
                }
            ),
        },
    }


def _object(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **optional}}


TOKEN = _object(
    {
        "id": {"type": "integer"},
        "name": STRING,
        "admin": STRING,
        "scopes": {"type": "array", "items": SCOPE},
        "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
        "created_at": TIME,
        "expires_at": TIME_OR_NULL,
        "last_used_at": TIME_OR_NULL,
        "revoked_at": TIME_OR_NULL,
    }
)
ADMIN = _object(
    {
        "username": STRING,
        "role": ROLE,
        "disabled": {"type": "boolean"},
        "disabled_at": TIME_OR_NULL,
        "created_at": TIME,
        "last_login_at": TIME_OR_NULL,
    }
)

schemas: dict[str, Any] = {
    "Token": TOKEN,
    "Tokens": _object({"tokens": {"type": "array", "items": _ref("Token")}}),
    "NewToken": _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "scopes": {"type": "array", "items": SCOPE, "minItems": 1},
        },
        expires_in_days={
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_EXPIRY_DAYS,
            "description": "Days until the token expires; null or left out: never.",
        },
    ),
    "CreatedToken": {
        **TOKEN,
        "required": [*TOKEN["required"], "token"],
        "properties": {
            **TOKEN["properties"],
            "token": {"type": "string", "description": "The token: shown only now."},
        },
    },
    "Admin": ADMIN,
    "Admins": _object({"admins": {"type": "array", "items": _ref("Admin")}}),
    "NewAdmin": _object(
        {
            "username": {"type": "string", "pattern": "^[A-Za-z0-9_.@-]{1,64}$"},
            "password": {"type": "string", "minLength": 10, "maxLength": 1000},
        },
        role=ROLE,
    ),
    "AdminChange": {
        **_object({}, role=ROLE, disabled={"type": "boolean"}),
        "minProperties": 1,
        "additionalProperties": False,
    },
    "AuditPage": _object(
        {
            "events": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "time": TIME,
                        "actor": STRING,
                        "via": STRING,
                        "client": {"type": ["string", "null"]},
                        "action": {"type": "string", "enum": list(ACTIONS)},
                        "target": STRING,
                        "detail": {"type": "object"},
                    }
                ),
            },
            "next_before": {
                "type": ["integer", "null"],
                "description": "Pass as `before` for the next (older) page; null on the last.",
            },
        }
    ),
}
