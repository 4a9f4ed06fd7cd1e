"""The OpenAPI 3.1 document of the public and admin HTTP API, served at /api/v1/openapi.json.

Written out by hand rather than generated: the endpoints are few, and their error shapes
and enumeration guarantees deserve words a generator would not write.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service._version import __version__

__all__ = ["document", "routes"]

ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


SLUG = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"},
}
SUBSCRIBER_ID = {
    "name": "subscriber_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
ADMIN_ERRORS = {"401": _error("No valid session or API token.")}

SIGNUP = {
    "type": "object",
    "required": ["email"],
    "properties": {
        "email": {"type": "string", "format": "email", "maxLength": 254},
        "name": {"type": "string", "maxLength": 100},
        "page_url": {"type": "string", "format": "uri", "maxLength": 2048},
        "consent": {
            "type": "string",
            "enum": ["yes", "true", "on", "1"],
            "description": "Required when the list asks for a consent checkbox.",
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/lists/{slug}/subscriptions": {
        "post": {
            "summary": "Subscribe an address to a list (double opt-in)",
            "description": "The answer to a valid request is the same whatever the address's "
            "state (new, pending, confirmed, unsubscribed): it never reveals "
            "whether someone is subscribed.",
            "parameters": [SLUG],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": SIGNUP},
                    "application/x-www-form-urlencoded": {"schema": SIGNUP},
                    "multipart/form-data": {"schema": SIGNUP},
                },
            },
            "responses": {
                "202": _json({"$ref": "#/components/schemas/Accepted"}, "Accepted."),
                "400": _error("The body is not valid JSON."),
                "403": _error("The calling page's origin may not sign people up to this list."),
                "404": _error("No such list."),
                "413": _error("The body is too large."),
                "415": _error("Unsupported content type."),
                "422": _error("A field is invalid; `fields` says which and why."),
            },
        },
        "options": {
            "summary": "CORS preflight",
            "parameters": [SLUG],
            "responses": {
                "204": {"description": "Allowed origin."},
                "403": _error("Origin not allowed."),
                "404": _error("No such list."),
            },
        },
    },
    "/api/v1/lists/{slug}/widget": {
        "get": {
            "summary": "The subscribe box's settings and texts for a list",
            "parameters": [
                SLUG,
                {
                    "name": "lang",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["en", "de", "fr"]},
                },
            ],
            "responses": {
                "200": _json(
                    {"type": "object", "required": ["list", "endpoint", "origin_allowed"]}
                ),
                "404": _error("No such list."),
            },
        },
    },
    "/api/v1/admin/lists": {
        "get": {
            "summary": "All lists",
            "security": [{"token": []}],
            "responses": {"200": _json({"type": "object"}), **ADMIN_ERRORS},
        },
        "post": {
            "summary": "Create a list",
            "security": [{"token": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["slug", "name"],
                            "properties": {
                                "slug": {"type": "string"},
                                "name": {"type": "string"},
                                "origins": {"type": "array", "items": {"type": "string"}},
                                "language": {"type": "string", "enum": ["en", "de", "fr"]},
                                "double_opt_in": {"type": "boolean"},
                                "consent_text": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json({"type": "object"}),
                "409": _error("Slug taken."),
                "422": _error("Invalid field."),
                **ADMIN_ERRORS,
            },
        },
    },
    "/api/v1/admin/lists/{slug}": {
        "get": {
            "summary": "One list",
            "security": [{"token": []}],
            "parameters": [SLUG],
            "responses": {
                "200": _json({"type": "object"}),
                "404": _error("No such list."),
                **ADMIN_ERRORS,
            },
        },
        "patch": {
            "summary": "Change a list and its box",
            "security": [{"token": []}],
            "parameters": [SLUG],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": _json({"type": "object"}),
                "404": _error("No such list."),
                "422": _error("Invalid setting."),
                **ADMIN_ERRORS,
            },
        },
    },
    "/api/v1/admin/subscribers": {
        "get": {
            "summary": "Search subscribers (keyset-paged)",
            "security": [{"token": []}],
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": schema}
                for name, schema in (
                    ("q", {"type": "string"}),
                    ("list", {"type": "string"}),
                    (
                        "status",
                        {"type": "string", "enum": ["pending", "confirmed", "unsubscribed"]},
                    ),
                    ("since", {"type": "string", "format": "date"}),
                    ("until", {"type": "string", "format": "date"}),
                    ("after", {"type": "integer"}),
                    ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                )
            ],
            "responses": {"200": _json({"type": "object", "required": ["items"]}), **ADMIN_ERRORS},
        },
    },
    "/api/v1/admin/subscribers/{subscriber_id}": {
        "get": {
            "summary": "Everything stored about one person",
            "security": [{"token": []}],
            "parameters": [SUBSCRIBER_ID],
            "responses": {
                "200": _json({"type": "object"}),
                "404": _error("Not found."),
                **ADMIN_ERRORS,
            },
        },
        "delete": {
            "summary": "Erase a person (a hash of the address is kept as suppression)",
            "security": [{"token": []}],
            "parameters": [SUBSCRIBER_ID],
            "responses": {
                "204": {"description": "Erased."},
                "404": _error("Not found."),
                **ADMIN_ERRORS,
            },
        },
    },
    "/api/v1/admin/subscribers/{subscriber_id}/unsubscribe": {
        "post": {
            "summary": "Unsubscribe a person from a list",
            "security": [{"token": []}],
            "parameters": [SUBSCRIBER_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["list"],
                            "properties": {"list": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "200": _json({"type": "object"}),
                "404": _error("Not found."),
                **ADMIN_ERRORS,
            },
        },
    },
    "/api/v1/admin/exports": {
        "get": {
            "summary": "Export subscribers (streamed CSV or NDJSON)",
            "description": "One row per subscriber and list, read from a server-side cursor "
            "and streamed as it is read. CSV: UTF-8, header row, RFC 4180 quoting, CRLF; "
            "cells starting with = + - @ TAB or CR get a leading ' so that spreadsheets "
            "do not run them as formulas.",
            "security": [{"token": []}],
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": schema}
                for name, schema in (
                    ("list", {"type": "string", "description": "a list's slug; all if absent"}),
                    (
                        "status",
                        {
                            "type": "string",
                            "default": "confirmed",
                            "description": "pending, confirmed, unsubscribed, failed or all; "
                            "repeat or separate with commas",
                        },
                    ),
                    ("since", {"type": "string", "format": "date"}),
                    ("until", {"type": "string", "format": "date"}),
                    (
                        "format",
                        {
                            "type": "string",
                            "enum": ["csv", "ndjson", "mailchimp", "listmonk"],
                            "default": "csv",
                        },
                    ),
                    ("bom", {"type": "boolean", "default": False}),
                )
            ],
            "responses": {
                "200": {
                    "description": "The file, as an attachment.",
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                "404": _error("No such list."),
                "422": _error("Invalid format, status or date."),
                **ADMIN_ERRORS,
            },
        },
    },
    "/api/v1/admin/lists/{slug}/imports": {
        "post": {
            "summary": "Import subscribers from a CSV file",
            "description": "Accepts this service's export, Mailchimp's and listmonk's. New "
            "addresses get a confirmation email (mode double-opt-in) or are subscribed at "
            "once on the caller's word (mode confirmed, with a reason kept in the consent "
            "record). Existing subscriptions are left unchanged and erased addresses stay "
            "suppressed, so repeating an import changes nothing.",
            "security": [{"token": []}],
            "parameters": [
                SLUG,
                {
                    "name": "mode",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "enum": ["double-opt-in", "confirmed"],
                        "default": "double-opt-in",
                    },
                },
                {"name": "reason", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "mode": {"type": "string", "enum": ["double-opt-in", "confirmed"]},
                                "reason": {"type": "string"},
                            },
                        }
                    },
                },
            },
            "responses": {
                "200": _json({"$ref": "#/components/schemas/ImportReport"}),
                "404": _error("No such list."),
                "413": _error("The file is too large."),
                "415": _error("Not CSV or a multipart form."),
                "422": _error(
                    "No usable header row, not UTF-8, or no reason for a confirmed import."
                ),
                **ADMIN_ERRORS,
            },
        },
    },
    "/api/v1/admin/stats": {
        "get": {
            "summary": "Counts per list and per day",
            "security": [{"token": []}],
            "responses": {"200": _json({"type": "object"}), **ADMIN_ERRORS},
        },
    },
}


def document(base_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Newsletter subscribe service",
            "version": __version__,
            "description": "Public signup API and admin API. Errors are "
            '`{"error": CODE, "message": TEXT}`.',
        },
        "servers": [{"url": base_url}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "newsletter admin token create NAME",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "ImportReport": {
                    "type": "object",
                    "properties": {
                        "format": {
                            "type": "string",
                            "enum": ["newsletter", "mailchimp", "listmonk", "csv"],
                        },
                        **{
                            name: {"type": "integer"}
                            for name in (
                                "rows",
                                "confirmed",
                                "confirmation_sent",
                                "unsubscribed",
                                "unchanged",
                                "left_unsubscribed",
                                "suppressed",
                                "duplicates",
                                "failed_in_file",
                                "invalid",
                            )
                        },
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "line": {"type": "integer"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                        "notes": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {"status": {"const": "accepted"}, "message": {"type": "string"}},
                },
            },
        },
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(
        document(request.state.settings.base_url),
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"},
    )


routes = [Route("/api/v1/openapi.json", openapi, methods=["GET"])]
