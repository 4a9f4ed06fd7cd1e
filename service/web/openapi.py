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
from service.box_counts import BOX_EVENTS, DEVICES, EVENTS, MAX_PAGE
from service.bulk import ACTIONS as BULK_ACTIONS
from service.challenges import SOLUTION_PATTERN
from service.i18n import LANGUAGES
from service.lists import SLUG_PATTERN
from service.models import SubscriptionStatus
from service.people import SHOWN_STATUSES
from service.signups import TICKED
from service.validation import MAX_EMAIL, MAX_NAME, MAX_URL
from service.web.bodies import MAX_FIELDS
from service.web.openapi_security import paths as security_paths
from service.web.openapi_security import schemas as security_schemas
from service.webhooks import spec as webhook_spec

__all__ = ["document", "routes"]

ERROR = {"$ref": "#/components/schemas/Error"}
# As editors see it: "failed" when the latest email could not be delivered.
SHOWN = {"type": "string", "enum": list(SHOWN_STATUSES)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(
    description: str, *, html: bool = False, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": ERROR}}
    if html:
        content["text/html"] = {"schema": {"type": "string"}}
    response: dict[str, Any] = {"description": description, "content": content}
    if headers:
        response["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# What any operation with a request body may answer before its own checks run.
BODY_ERRORS = {
    "400": _error("The body cannot be read: not valid JSON, UTF-8 or multipart."),
    "408": _error("The body took too long to arrive."),
    "413": _error("The body is too large."),
    "415": _error("Unsupported Content-Type."),
    "422": _error("The body is not a JSON object, or a field in it is invalid."),
}
ADMIN_ERRORS = {
    "401": _error(
        "No valid session or API token, or the token expired (the message says so).",
        headers={"WWW-Authenticate": "Bearer realm=..."},
    ),
    "403": _error(
        "The token lacks the scope this needs, or the admin's role does not allow it "
        "(the message names the scope)."
    ),
}
# A signed-in browser's state-changing call from another site (API tokens are exempt).
CROSS_SITE = {
    "403": _error(
        "Sent from another site with a session cookie; or the token or role lacks the "
        "scope this needs (the message names it)."
    )
}


def _admin(operation: dict[str, Any], *, changes: bool = False) -> dict[str, Any]:
    responses = {**operation["responses"], **ADMIN_ERRORS, **(CROSS_SITE if changes else {})}
    if "requestBody" in operation:
        responses = {**BODY_ERRORS, **responses}
    return {**operation, "security": [{"token": []}], "responses": responses}


SLUG_SCHEMA = {"type": "string", "pattern": SLUG_PATTERN}
FLAG_WORDS = ("", "0", "1", "true", "false", "yes", "no", "on", "off")
# A date filter; an empty one (as a form sends it) is no bound.
DATE_OR_EMPTY = {
    "type": "string",
    "anyOf": [{"format": "date"}, {"maxLength": 0}],
    "description": "YYYY-MM-DD; empty: no bound",
}
# An export's statuses: one or more, repeated or separated with commas.
_ONE_STATUS = "(pending|confirmed|unsubscribed|failed|all)"
STATUSES_PARAM = {
    "type": "string",
    "pattern": f"^({_ONE_STATUS}(,{_ONE_STATUS})*)?$",
    "default": "confirmed",
    "description": "pending, confirmed, unsubscribed, failed or all; repeat or separate with "
    "commas",
}
# An http(s) origin: scheme, host and a port that exists (1-65535).
_PORT = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ORIGIN_PATTERN = f"^https?://[a-z0-9.-]+(:{_PORT})?$"
STRING_ = {"type": "string"}
SLUG = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": SLUG_SCHEMA,
    "example": "daily",
}
SUBSCRIBER_ID = {
    "name": "subscriber_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
    "example": 1,
}

# Unicode's control, format and line/paragraph separator characters (categories Cc, Cf,
# Zl, Zp), which service.validation refuses in a name: as ranges, for a pattern.
_CONTROLS = (
    (0x0, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F),
    (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip
NO_CONTROLS = "^[^" + "".join(f"{chr(a)}-{chr(b)}" for a, b in _CONTROLS) + "]*$"

SIGNUP = {
    "type": "object",
    "required": ["email"],
    "properties": {
        "email": {"type": "string", "format": "email", "maxLength": MAX_EMAIL},
        "name": {"type": "string", "maxLength": MAX_NAME, "pattern": NO_CONTROLS},
        "page_url": {
            "type": "string",
            "anyOf": [{"format": "uri"}, {"maxLength": 0}],  # empty: none (a form's field)
            "maxLength": MAX_URL,
        },
        "consent": {
            "type": "string",
            "description": f"A ticked box ({', '.join(TICKED)}); required when the list asks "
            "for a consent checkbox, ignored when it does not.",
        },
        "lang": {
            "type": "string",
            "enum": list(LANGUAGES),
            "description": "The language the form was shown in, when not the list's: the "
            "consent record keeps the wording in it.",
        },
        "form_stamp": {
            "type": "string",
            "description": "When the form was shown: the `form_stamp` of "
            "GET /api/v1/lists/{slug}/challenge, fetched as the form appeared. Without one at "
            "least NEWSLETTER_MIN_FILL_TIME old, the signup must carry a proof of work.",
        },
        "pow_challenge": {
            "type": "string",
            "description": "Required when the list asks for proof of work, when it (or the "
            "client) is taking signups fast enough to ask every signup for one, or when the "
            "signup has no good form stamp: a challenge from "
            "GET /api/v1/lists/{slug}/challenge, used once.",
        },
        "pow_solution": {
            "type": "string",
            "pattern": f"^({SOLUTION_PATTERN.strip('^$')})?$",  # empty: none (a form's field)
            "description": "A number n such that SHA-256(pow_challenge + ':' + n) starts "
            "with `difficulty` zero bits.",
        },
    },
}
# A form: every field is text, sent once (a field sent twice is refused), at most 20.
SIGNUP_FORM = {
    **SIGNUP,
    "additionalProperties": {"type": "string"},
    "maxProperties": MAX_FIELDS,
}
_TEXT = {"type": "string"}
LIST_CHANGES = {
    "type": "object",
    "description": "Any of the list's fields and its box's settings (see docs/embedding.md); "
    "an empty string resets a box setting to its default.",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "\\S"},
        "language": {"type": "string", "enum": list(LANGUAGES)},
        "origins": {"type": "array", "items": {"type": "string", "pattern": ORIGIN_PATTERN}},
        "double_opt_in": {"type": "boolean"},
        "consent_text": _TEXT,
        "title": {**_TEXT, "maxLength": 120},
        "text": {**_TEXT, "maxLength": 500},
        "button": {**_TEXT, "maxLength": 40},
        "success": {**_TEXT, "maxLength": 300},
        "position": {"type": "string", "enum": ["bottom-right", "bottom-left", "bottom-center"]},
        "theme": {"type": "string", "enum": ["light", "dark", "auto"]},
        "accent": {
            "type": "string",
            "pattern": "^#([0-9a-fA-F]{3}|[0-9a-fA-F]{4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$",
        },
        "trigger": {
            "type": "string",
            "enum": ["delay", "scroll", "exit", "immediate", "inline"],
        },
        "delay": {"type": "integer", "minimum": 0, "maximum": 600},
        "scroll": {"type": "integer", "minimum": 0, "maximum": 100},
        "dismissDays": {"type": "integer", "minimum": 0, "maximum": 3650},
        "nameField": {"type": "boolean"},
        "consentCheckbox": {"type": "boolean"},
        "proofOfWork": {"type": "boolean"},
        "privacyUrl": {
            "type": "string",
            "anyOf": [{"maxLength": 0}, {"pattern": "^https?://[^/?#]+", "maxLength": 2000}],
        },
    },
}
NEW_LIST = {
    "type": "object",
    "required": ["slug", "name"],
    "properties": {
        "slug": {**SLUG_SCHEMA, "example": "weekly"},
        "name": {"type": "string", "pattern": "\\S", "example": "The Weekly"},
        "origins": {
            "type": "array",
            "items": {
                "type": "string",
                "pattern": ORIGIN_PATTERN,
                "example": "https://www.example.com",
            },
        },
        "language": {"type": "string", "enum": list(LANGUAGES)},
        "double_opt_in": {"type": "boolean"},
        "consent_text": {"type": "string"},
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/lists/{slug}/subscriptions": {
        "post": {
            "summary": "Subscribe an address to a list (double opt-in)",
            "description": "The answer to a valid request is the same whatever the address's "
            "state (new, pending, confirmed, unsubscribed): it never reveals "
            "whether someone is subscribed. A browser's form post (one that accepts "
            "text/html) gets a result page instead of JSON.",
            "parameters": [SLUG],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": SIGNUP},
                    "application/x-www-form-urlencoded": {"schema": SIGNUP_FORM},
                    "multipart/form-data": {"schema": SIGNUP_FORM},
                },
            },
            "responses": {
                **BODY_ERRORS,
                "202": {
                    "description": "Accepted.",
                    "content": {
                        "application/json": {"schema": _ref("Accepted")},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                "400": _error("The body cannot be read.", html=True),
                "403": _error(
                    "The calling page's origin may not sign people up to this list; or a "
                    "proof of work is needed (the list asks for one, the list or the client is "
                    "taking signups fast, or the form stamp is missing, not ours or too "
                    "young) and it is missing, expired, for another list, used already, "
                    "easier than now asked or wrong (`error` is `proof_of_work`).",
                    html=True,
                ),
                "404": _error("No such list."),
                "422": _error("A field is invalid; `fields` says which and why.", html=True),
                "429": _error(
                    "Too many signups from this client address (or to this list, where it "
                    "has a hard cap); try again later.",
                    html=True,
                    headers={"Retry-After": "Seconds to wait before trying again."},
                ),
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
    "/api/v1/lists/{slug}/challenge": {
        "get": {
            "summary": "A proof-of-work challenge for one signup to the list",
            "description": "Find a number n such that SHA-256(challenge + ':' + n) starts "
            "with `difficulty` zero bits, and send both with the signup as `pow_challenge` "
            "and `pow_solution`. Each challenge works once, for this list, for "
            "`expires_in` seconds. `required` says whether a signup from this client must "
            "carry one now: the list asks for it, or the list or the client is taking signups "
            "fast, which also raises `difficulty`.",
            "parameters": [SLUG],
            "responses": {
                "200": {
                    **_json(_ref("Challenge")),
                    "headers": {
                        "Cache-Control": {
                            "description": "no-store",
                            "required": True,
                            "schema": {"type": "string", "const": "no-store"},
                        }
                    },
                },
                "403": _error("The calling page's origin may not sign people up to this list."),
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
                    "schema": {
                        "type": "string",
                        "description": f"one of {', '.join(LANGUAGES)}; any other gets the "
                        "list's language (a page's language is passed on as it is)",
                    },
                },
            ],
            "responses": {
                "200": _json(_ref("WidgetConfig")),
                "404": _error("No such list."),
            },
        },
    },
    "/api/v1/admin/lists": {
        "get": _admin({"summary": "All lists", "responses": {"200": _json(_ref("Lists"))}}),
        "post": _admin(
            {
                "summary": "Create a list",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": NEW_LIST}},
                },
                "responses": {
                    "201": _json(_ref("List"), "Created."),
                    "409": _error("Slug taken."),
                    "422": _error("Invalid field."),
                },
            },
            changes=True,
        ),
    },
    "/api/v1/admin/lists/{slug}": {
        "get": _admin(
            {
                "summary": "One list",
                "parameters": [SLUG],
                "responses": {"200": _json(_ref("List")), "404": _error("No such list.")},
            }
        ),
        "patch": _admin(
            {
                "summary": "Change a list and its box",
                "parameters": [SLUG],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": LIST_CHANGES}},
                },
                "responses": {
                    "200": _json(_ref("List")),
                    "404": _error("No such list."),
                    "422": _error("Invalid setting."),
                },
            },
            changes=True,
        ),
    },
    "/api/v1/admin/subscribers": {
        "get": _admin(
            {
                "summary": "Search subscribers (keyset-paged)",
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": schema}
                    for name, schema in (
                        ("q", {"type": "string"}),
                        ("list", {"type": "string"}),
                        ("status", {"type": "string", "enum": ["", *SHOWN_STATUSES]}),
                        ("since", DATE_OR_EMPTY),
                        ("until", DATE_OR_EMPTY),
                        ("after", {"type": "integer", "minimum": 0}),
                        ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                    )
                ],
                "responses": {
                    "200": _json(_ref("SubscriberPage")),
                    "422": _error("A date, after or limit that is not one."),
                },
            }
        ),
    },
    "/api/v1/admin/subscribers/{subscriber_id}": {
        "get": _admin(
            {
                "summary": "Everything stored about one person",
                "parameters": [SUBSCRIBER_ID],
                "responses": {"200": _json(_ref("Person")), "404": _error("Not found.")},
            }
        ),
        "delete": _admin(
            {
                "summary": "Erase a person (a hash of the address is kept as suppression)",
                "parameters": [SUBSCRIBER_ID],
                "responses": {"204": {"description": "Erased."}, "404": _error("Not found.")},
            },
            changes=True,
        ),
    },
    "/api/v1/admin/subscribers/{subscriber_id}/unsubscribe": {
        "post": _admin(
            {
                "summary": "Unsubscribe a person from a list",
                "parameters": [SUBSCRIBER_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["list"],
                                "properties": {"list": {"type": "string", "example": "daily"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"const": "unsubscribed"}},
                        }
                    ),
                    "404": _error("No such person, or not on that list."),
                },
            },
            changes=True,
        ),
    },
    "/api/v1/admin/exports": {
        "get": _admin(
            {
                "summary": "Export subscribers (streamed CSV or NDJSON)",
                "description": "One row per subscriber and list, read from a server-side "
                "cursor and streamed as it is read. CSV: UTF-8, header row, RFC 4180 quoting, "
                "CRLF; in format csv, cells starting with = + - @ TAB or CR get a leading ' "
                "so that spreadsheets do not run them as formulas (the mailchimp and listmonk "
                "layouts, read by those tools' importers, are written as they are). "
                "attributes is always a JSON object. csv and ndjson carry the consent "
                "evidence (signup_ip, signup_user_agent, signup_wording, confirm_ip, "
                "confirm_user_agent, confirm_wording); mailchimp has OPTIN_IP and CONFIRM_IP. "
                "mailchimp takes one status per file; listmonk one status and one list.",
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": schema}
                    for name, schema in (
                        (
                            "list",
                            {"type": "string", "description": "a list's slug; all if absent"},
                        ),
                        ("status", STATUSES_PARAM),
                        ("since", DATE_OR_EMPTY),
                        ("until", DATE_OR_EMPTY),
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
                        "headers": {
                            "Content-Disposition": {
                                "description": "attachment; filename=...",
                                "required": True,
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "404": _error("No such list."),
                    "422": _error(
                        "Invalid format, status or date, or several statuses for mailchimp."
                    ),
                },
            }
        ),
    },
    "/api/v1/admin/lists/{slug}/imports": {
        "post": _admin(
            {
                "summary": "Import subscribers from a CSV file",
                "description": "Accepts this service's export, Mailchimp's and listmonk's. "
                "New addresses get a confirmation email (mode double-opt-in) or are "
                "subscribed at once on the caller's word (mode confirmed, with a reason kept "
                "in the consent record). Existing subscriptions are left unchanged, except "
                "that one the file marks as opted out (unsubscribed, cleaned, blocklisted) is "
                "unsubscribed; erased addresses stay suppressed, so repeating an import "
                "changes nothing. The whole file is checked before anything is written: a "
                "file that cannot be read writes nothing. dry_run reports what would change "
                "and writes nothing. update_existing updates the name and merges the "
                "attributes of people already here from the file, never their subscriptions' "
                "status. Confirmation emails follow the service-wide confirmation cap "
                "(NEWSLETTER_RATE_LIMIT_CONFIRMATIONS), shared with signups: "
                "confirmation_sent counts those sent now, confirmation_waiting those queued "
                "for the worker to send as the cap allows.",
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
                    {
                        "name": "reason",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "dry_run",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(FLAG_WORDS)},
                    },
                    {
                        "name": "update_existing",
                        "in": "query",
                        "required": False,
                        "description": "Update the name and merge the attributes of people "
                        "already here (never their status).",
                        "schema": {"type": "string", "enum": list(FLAG_WORDS)},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "text/csv": {
                            "schema": {"type": "string", "minLength": 1},
                            "example": "email,name\r\nreader@example.com,Reader\r\n",
                        },
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "mode": {
                                        "type": "string",
                                        "enum": ["double-opt-in", "confirmed"],
                                    },
                                    "reason": {"type": "string"},
                                    "dry_run": {"type": "string", "enum": list(FLAG_WORDS)},
                                    "update_existing": {
                                        "type": "string",
                                        "enum": list(FLAG_WORDS),
                                    },
                                },
                                # Text fields, each once, ten at most.
                                "additionalProperties": {"type": "string"},
                                "maxProperties": 10,
                            }
                        },
                    },
                },
                "responses": {
                    "200": _json(_ref("ImportReport")),
                    "404": _error("No such list."),
                    "413": _error("The file is too large."),
                    "415": _error("Not CSV or a multipart form."),
                    "422": _error(
                        "No usable header row, a line that cannot be decoded or parsed (named), "
                        "or no reason for a confirmed import; nothing was written."
                    ),
                },
            },
            changes=True,
        ),
    },
    "/api/v1/admin/stats": {
        "get": _admin(
            {"summary": "Counts per list and per day", "responses": {"200": _json(_ref("Stats"))}}
        ),
    },
}

STRING = {"type": "string"}
TEXT_OR_NULL = {"type": ["string", "null"]}
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
STATUS = {"type": "string", "enum": [str(s) for s in SubscriptionStatus]}


def _object(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **optional},
    }


# The subscribe box's counts and A/B tests (service.box_counts, box_stats, box_tests) ------

BOX_EVENT_FIELDS = {
    "e": {"type": "string", "enum": list(BOX_EVENTS), "description": "What the box did."},
    "p": {
        "type": "string",
        "maxLength": MAX_PAGE,
        "pattern": "^/",
        "description": "The page's path (a query string or fragment is dropped).",
    },
    "v": {
        "type": "string",
        "description": "The A/B test variant's key the reader sees; empty without a test.",
    },
    "d": {
        "type": "string",
        "enum": list(DEVICES),
        "description": "Phone (up to 480 px) or larger.",
    },
}
TEST_ID = {"name": "test_id", "in": "path", "required": True, "schema": {"type": "integer"}}
BOX_QUERY = [
    {
        "name": name,
        "in": "query",
        "schema": DATE_OR_EMPTY,
        "description": text,
    }
    for name, text in (
        ("from", "First day (UTC); 30 days before `to` if not given."),
        ("to", "Last day (UTC), included; today if not given."),
    )
] + [
    {"name": "device", "in": "query", "schema": {"type": "string", "enum": ["all", *DEVICES]}},
    {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["count", "conversion"]}},
]
VARIANT_IN = {
    "type": "object",
    "properties": {
        "label": STRING_,
        "weight": {"type": "integer", "minimum": 1, "maximum": 100},
        "title": STRING_,
        "text": STRING_,
        "button": STRING_,
        "trigger": {"type": "string", "enum": ["delay", "scroll", "exit", "immediate"]},
        "delay": {"type": "integer", "minimum": 0, "maximum": 600},
        "scroll": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "additionalProperties": False,
}
PATHS.update(
    {
        "/api/v1/lists/{slug}/events": {
            "post": {
                "summary": "Count what the subscribe box did (navigator.sendBeacon)",
                "description": "Adds one to the list's count for today, the page, the variant "
                "and the device class. No cookie, identifier or address is kept; a request "
                "with `DNT: 1` or `Sec-GPC: 1` is answered and counts nothing. The same "
                "urlencoded body may come as `text/plain` (what `navigator.sendBeacon` sends "
                "for a string).",
                "parameters": [SLUG],
                "requestBody": {
                    "required": True,
                    "content": {
                        media: {
                            "schema": {
                                "type": "object",
                                "required": ["e", "p", "d"],
                                "properties": BOX_EVENT_FIELDS,
                            }
                        }
                        for media in ("application/x-www-form-urlencoded",)
                    },
                },
                "responses": {
                    "204": {"description": "Counted."},
                    "403": _error("The calling page's origin may not use this list."),
                    "404": _error("No such list."),
                    "413": _error("The body is larger than 1 KB."),
                    "415": _error("Not a urlencoded form."),
                    "422": _error("A field is missing or wrong (the message says which)."),
                },
            }
        },
        "/api/v1/admin/lists/{slug}/box": {
            "get": _admin(
                {
                    "summary": "What the box did: funnel, days, pages and variants",
                    "parameters": [SLUG, *BOX_QUERY],
                    "responses": {
                        "200": _json(_ref("BoxReport")),
                        "404": _error("No such list."),
                        "422": _error("A query parameter is wrong."),
                    },
                }
            )
        },
        "/api/v1/admin/lists/{slug}/tests": {
            "get": _admin(
                {
                    "summary": "The list's A/B tests, newest first, with their results",
                    "parameters": [SLUG],
                    "responses": {
                        "200": _json(
                            _object(
                                {
                                    "list": STRING_,
                                    "tests": {"type": "array", "items": _ref("BoxTest")},
                                }
                            )
                        ),
                        "404": _error("No such list."),
                    },
                }
            ),
            "post": _admin(
                {
                    "summary": "Start an A/B test of the box",
                    "parameters": [SLUG],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["name", "variants"],
                                    "properties": {
                                        "name": STRING_,
                                        "control_weight": {"type": "integer", "minimum": 1},
                                        "variants": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": 4,
                                            "items": VARIANT_IN,
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json(_ref("BoxTest"), "Started."),
                        "404": _error("No such list."),
                        "409": _error("A test runs on this list already."),
                    },
                },
                changes=True,
            ),
        },
        "/api/v1/admin/lists/{slug}/tests/{test_id}/end": {
            "post": _admin(
                {
                    "summary": "End a test; its results stay (a repeat changes nothing)",
                    "parameters": [SLUG, TEST_ID],
                    "responses": {
                        "200": _json(_ref("BoxTest")),
                        "404": _error("No such test on this list."),
                    },
                },
                changes=True,
            )
        },
        "/api/v1/admin/lists/{slug}/tests/{test_id}/promote": {
            "post": _admin(
                {
                    "summary": "Make a variant the box's settings, and end the test",
                    "parameters": [SLUG, TEST_ID],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": _object({"variant": STRING_}),
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_ref("BoxTest")),
                        "404": _error("No such test on this list."),
                        "409": _error("The test ended with another winner."),
                    },
                },
                changes=True,
            )
        },
    }
)

SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {"error": STRING, "message": STRING},
        fields={
            "type": "object",
            "description": "What is wrong with each field, by name.",
            "additionalProperties": STRING,
        },
    ),
    "Accepted": _object({"status": {"const": "accepted"}, "message": STRING}),
    "Challenge": _object(
        {
            "challenge": STRING,
            "difficulty": {"type": "integer", "minimum": 1, "maximum": 32},
            "expires_in": {"type": "number", "description": "Seconds it stays valid."},
            "required": {
                "type": "boolean",
                "description": "Whether a signup from this client must carry this proof of "
                "work now: the list asks every signup for one, or it (or the client) is taking "
                "signups fast enough that a surge does.",
            },
            "form_stamp": {
                "type": "string",
                "description": "The signed time the form was shown; send it with the signup.",
            },
        }
    ),
    "WidgetConfig": _object(
        {
            "list": STRING,
            "name": STRING,
            "language": STRING,
            "endpoint": {"type": "string", "format": "uri"},
            "origin_allowed": {"type": "boolean"},
            "settings": {"type": "object"},
            "texts": {"type": "object", "additionalProperties": STRING},
        }
    ),
    "List": _object(
        {
            "slug": STRING,
            "name": STRING,
            "language": STRING,
            "allowed_origins": {"type": "array", "items": STRING},
            "double_opt_in": {"type": "boolean"},
            "consent_text": STRING,
            "box": {"type": "object", "description": "The box's effective settings."},
            "created_at": TIME,
        }
    ),
    "Lists": _object({"lists": {"type": "array", "items": _ref("List")}}),
    "SubscriberPage": _object(
        {
            "items": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "email": STRING,
                        "name": TEXT_OR_NULL,
                        "created_at": TIME,
                        "lists": {
                            "type": "array",
                            "items": _object({"list": STRING, "status": SHOWN}),
                        },
                    }
                ),
            },
            "total": {"type": "integer", "description": "People matching, on every page."},
            "next_after": {
                "type": ["integer", "null"],
                "description": "Pass as `after` for the next page; null on the last.",
            },
        }
    ),
    "Person": _object(
        {
            "id": {"type": "integer"},
            "email": STRING,
            "name": TEXT_OR_NULL,
            "attributes": {"type": ["object", "null"]},
            "created_at": TIME_OR_NULL,
            "subscriptions": {
                "type": "array",
                "items": _object(
                    {
                        "list": STRING,
                        "list_name": STRING,
                        "status": STATUS,
                        "subscribed_at": TIME_OR_NULL,
                        "confirmed_at": TIME_OR_NULL,
                        "unsubscribed_at": TIME_OR_NULL,
                    }
                ),
            },
            "consent_records": {
                "type": "array",
                "items": _object(
                    {
                        "list": STRING,
                        "action": STRING,
                        "at": TIME_OR_NULL,
                        "ip_address": TEXT_OR_NULL,
                        "user_agent": TEXT_OR_NULL,
                        "page_url": TEXT_OR_NULL,
                        "wording": TEXT_OR_NULL,
                        "method": TEXT_OR_NULL,
                    }
                ),
            },
            "emails": {
                "type": "array",
                "items": _object(
                    {
                        "list": TEXT_OR_NULL,
                        "kind": STRING,
                        "status": STRING,
                        "queued_at": TIME_OR_NULL,
                        "sent_at": TIME_OR_NULL,
                    }
                ),
            },
        }
    ),
    "Stats": _object(
        {
            "lists": {
                "type": "array",
                "items": {
                    **_object({"list": STRING, "name": STRING}),
                    "additionalProperties": {"type": "integer"},
                    "description": "Subscriptions per status.",
                },
            },
            "daily": {
                "type": "array",
                "items": _object(
                    {
                        "day": {"type": "string", "format": "date"},
                        "signups": {"type": "integer"},
                        "confirmations": {"type": "integer"},
                        "unsubscribes": {"type": "integer"},
                    }
                ),
            },
        }
    ),
    "ImportReport": {
        "type": "object",
        "properties": {
            "format": {
                "type": "string",
                "enum": ["newsletter", "mailchimp", "listmonk", "csv"],
            },
            "dry_run": {"type": "boolean"},
            "encoding": {
                "type": "string",
                "enum": ["UTF-8", "UTF-8 with BOM", "UTF-16", "Windows-1252"],
            },
            "delimiter": {"type": "string", "enum": [",", ";", "\t"]},
            "columns_not_kept": {"type": "array", "items": {"type": "string"}},
            **{
                name: {"type": "integer"}
                for name in (
                    "rows",
                    "confirmed",
                    "confirmation_sent",
                    "unsubscribed",
                    "unsubscribed_by_file",
                    "unchanged",
                    "left_unsubscribed",
                    "suppressed",
                    "blocklisted",
                    "duplicates",
                    "failed_in_file",
                    "invalid",
                )
            },
            "confirmation_waiting": {
                "type": "integer",
                "description": "Pending, their confirmation email queued to be sent as the "
                "service-wide confirmation cap allows.",
            },
            "updated": {
                "type": "integer",
                "description": "People already here whose name or attributes were updated "
                "(update_existing).",
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
}


RATE = {"type": ["number", "null"], "description": "Of the views (null: none)."}
FUNNEL = _object(
    {event: {"type": "integer"} for event in EVENTS},
    submitted_rate=RATE,
    confirmed_rate=RATE,
    confirmed_of_submitted={"type": ["number", "null"]},
)
SCHEMAS.update(
    {
        "Funnel": FUNNEL,
        "BoxReport": _object(
            {
                "list": STRING,
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "device": {"type": ["string", "null"]},
                "funnel": _ref("Funnel"),
                "days": {"type": "array", "items": {"allOf": [_ref("Funnel")], "type": "object"}},
                "pages": {"type": "array", "items": {"type": "object"}},
                "variants": {"type": "array", "items": {"type": "object"}},
            }
        ),
        "BoxTest": _object(
            {
                "id": {"type": "integer"},
                "name": STRING,
                "started_at": TIME,
                "ended_at": TIME_OR_NULL,
                "winner": TEXT_OR_NULL,
                "verdict": _object({"winner": TEXT_OR_NULL, "reason": STRING}),
                "variants": {
                    "type": "array",
                    "items": _object(
                        {
                            "key": STRING,
                            "label": STRING,
                            "weight": {"type": "integer"},
                            "settings": {"type": "object"},
                            "shown": {"type": "integer"},
                            "submitted": {"type": "integer"},
                            "confirmed": {"type": "integer"},
                            "rate": {"type": ["number", "null"]},
                            "credible_interval": {
                                "type": "array",
                                "items": {"type": "number"},
                                "description": "95 % central interval of the rate (Beta "
                                "posterior, uniform prior).",
                            },
                            "probability_to_beat_control": {"type": ["number", "null"]},
                        }
                    ),
                },
            }
        ),
    }
)


# The blocklist, and editing people (service.web.admin.blocklist, service.web.admin.people).
BLOCKLIST_ENTRY = _object(
    {
        "id": {"type": "integer"},
        "value": STRING,
        "kind": {"type": "string", "enum": ["address", "domain"]},
        "note": STRING,
        "created_by": STRING,
        "created_at": TIME,
    }
)
ENTRY_ID = {**SUBSCRIBER_ID, "name": "entry_id"}
PATHS["/api/v1/admin/blocklist"] = {
    "get": _admin(
        {
            "summary": "The blocklist (addresses and domains no signup or import adds)",
            "parameters": [{"name": "q", "in": "query", "required": False, "schema": STRING}],
            "responses": {
                "200": _json(_object({"items": {"type": "array", "items": BLOCKLIST_ENTRY}}))
            },
        }
    ),
    "post": _admin(
        {
            "summary": "Block addresses and domains",
            "description": "An address blocks every spelling of its inbox (case, +tags, "
            "Gmail's dots); a domain blocks its subdomains. Entries already there are "
            "left as they are. A bad entry refuses the whole request.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object(
                            {
                                "entries": {
                                    "type": "array",
                                    "items": {"type": "string", "minLength": 1},
                                    "minItems": 1,
                                    "maxItems": 1000,
                                    "example": ["spam.example", "someone@example.com"],
                                }
                            },
                            note={
                                "type": "string",
                                "description": "Kept up to 200 characters.",
                            },
                        )
                    }
                },
            },
            "responses": {
                "201": _json(
                    _object({"added": {"type": "array", "items": BLOCKLIST_ENTRY}}), "Blocked."
                ),
                "422": _error("An entry is neither an address nor a domain."),
            },
        },
        changes=True,
    ),
}
PATHS["/api/v1/admin/blocklist/{entry_id}"] = {
    "delete": _admin(
        {
            "summary": "Unblock an entry",
            "parameters": [ENTRY_ID],
            "responses": {"204": {"description": "Removed."}, "404": _error("No such entry.")},
        },
        changes=True,
    ),
}


ATTRIBUTES = {
    "type": "object",
    "maxProperties": 50,
    "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    "description": "Flat: text, numbers, true/false or null values.",
}
EVIDENCE = {
    "type": "string",
    "maxLength": 500,
    "description": "Where, when and how the person consented: given, the lists added "
    "confirm them at once and it is kept in their consent record; else each list added "
    "sends a confirmation email.",
}
EDITED = _object(
    {
        "id": {"type": "integer"},
        "added": {
            "type": "object",
            "additionalProperties": {"type": "string", "enum": ["pending", "confirmed"]},
        },
        "removed": {"type": "array", "items": STRING},
        "not_added": {
            "type": "object",
            "additionalProperties": STRING,
            "description": "Lists not added, and why (unsubscribed earlier, blocklisted).",
        },
    }
)
SLUGS = {"type": "array", "items": STRING, "example": ["daily"]}
PATHS["/api/v1/admin/subscribers"]["post"] = _admin(
    {
        "summary": "Add a person by hand",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _object(
                        {
                            "email": {"type": "string", "format": "email"},
                            "lists": {**SLUGS, "minItems": 1},
                        },
                        name={"type": "string", "maxLength": MAX_NAME},
                        attributes=ATTRIBUTES,
                        evidence=EVIDENCE,
                    )
                }
            },
        },
        "responses": {
            "201": _json(EDITED, "Added."),
            "409": _error("The address is here already."),
            "422": _error("A field is invalid, or the address is erased or blocklisted."),
        },
    },
    changes=True,
)
PATHS["/api/v1/admin/subscribers/{subscriber_id}"]["patch"] = _admin(
    {
        "summary": "Edit a person: name, attributes, lists",
        "description": "Fields left out stay as they are. `lists` is every list the person "
        "is to be on: lists missing from it are unsubscribed; a list they unsubscribed from "
        "is not subscribed again (only they can).",
        "parameters": [SUBSCRIBER_ID],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "maxLength": MAX_NAME},
                            "attributes": ATTRIBUTES,
                            "lists": SLUGS,
                            "evidence": EVIDENCE,
                        },
                    }
                }
            },
        },
        "responses": {
            "200": _json(EDITED),
            "404": _error("No such person."),
            "422": _error("A field is invalid."),
        },
    },
    changes=True,
)
PATHS["/api/v1/admin/subscribers/bulk"] = {
    "post": _admin(
        {
            "summary": "Act on everyone a search matches (unsubscribe, erase, add, move)",
            "description": "Without `expected`, says how many people the search matches "
            "and what the action would do, changing nothing. With it, does it, unless the "
            "search now matches another number (409, nothing done).",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object(
                            {"action": {"type": "string", "enum": list(BULK_ACTIONS)}},
                            filters={
                                "type": "object",
                                "properties": {
                                    key: {"type": "string"}
                                    for key in ("q", "list", "status", "since", "until")
                                },
                                "description": "As for GET /api/v1/admin/subscribers; "
                                "`move` needs `list`.",
                            },
                            target={"type": "string", "description": "add, move: the list"},
                            evidence=EVIDENCE,
                            expected={"type": "integer", "minimum": 0},
                        )
                    }
                },
            },
            "responses": {
                "200": _json(
                    _object(
                        {
                            "done": {"type": "boolean"},
                            "matching": {"type": "integer"},
                            "description": STRING,
                        },
                        changed={"type": "integer"},
                        left={"type": "integer"},
                    )
                ),
                "409": _error("The search matches another number of people now."),
                "422": _error("Unknown action, missing or unknown list."),
            },
        },
        changes=True,
    ),
}


WELCOME = _object(
    {
        "list": STRING,
        "enabled": {"type": "boolean"},
        "language": STRING,
        "subject": STRING,
        "body": STRING,
        "texts": {"type": "object", "description": "Every language's text kept, by language."},
    }
)
PATHS["/api/v1/admin/lists/{slug}/welcome"] = {
    "get": _admin(
        {
            "summary": "A list's welcome email",
            "description": "Sent once after a subscription's first confirmation, never after "
            "a re-confirmation. An empty subject and body: the built-in text in the list's "
            "language.",
            "parameters": [SLUG],
            "responses": {"200": _json(WELCOME), "404": _error("No such list.")},
        }
    ),
    "put": _admin(
        {
            "summary": "Turn a list's welcome email on or off and set its text",
            "description": "subject and body in the list's language; {name} and {list} are "
            "filled in. Both empty: the built-in text.",
            "parameters": [SLUG],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object(
                            {"enabled": {"type": "boolean"}},
                            subject={"type": "string", "maxLength": 200},
                            body={"type": "string", "maxLength": 10000},
                        )
                    }
                },
            },
            "responses": {"200": _json(WELCOME), "404": _error("No such list.")},
        },
        changes=True,
    ),
}
PATHS.update(
    {
        path: {m: _admin(op, changes=m != "get") for m, op in operations.items()}
        for path, operations in webhook_spec.OPERATIONS.items()
    }
)
SCHEMAS.update(webhook_spec.SCHEMAS)


def document(base_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Newsletter subscribe service",
            "version": __version__,
            "description": "Public signup API and admin API. Every 4xx and 5xx answer in "
            'JSON is `{"error": CODE, "message": TEXT}`, with `"fields": {NAME: PROBLEM}` '
            "when particular fields are wrong.",
        },
        "servers": [{"url": base_url}],
        "paths": {**PATHS, **security_paths(_admin, _error, _json)},
        "webhooks": webhook_spec.WEBHOOKS,
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token: `newsletter admin token create NAME "
                    "--scopes read,export`, or made on the admin's Security page. Each "
                    "operation needs one scope: read, export, write, erase or admin.",
                }
            },
            "schemas": {**SCHEMAS, **security_schemas},
        },
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(
        document(request.state.settings.base_url),
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"},
    )


routes = [Route("/api/v1/openapi.json", openapi, methods=["GET"])]
