"""Every kind of bad request gets a 4xx that says what is wrong, and changes nothing.

One table of malformed requests against the public API and the link pages. Each row names
the status and a phrase the answer must contain; after each one, every table in the
database is exactly as before and no email went out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support import SUBSCRIBE, Running, SMTPServer, snapshot

from service.tokens import Purpose, TokenSigner

ORIGIN = "https://www.example.com"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Case:
    name: str
    method: str
    path: str
    status: int
    says: str  # a phrase the answer must contain (case-insensitive)
    kwargs: dict[str, Any] = field(default_factory=dict)


def body(status: int, says: str, name: str, content: bytes | str, **headers: str) -> Case:
    raw = content.encode() if isinstance(content, str) else content
    return Case(name, "POST", SUBSCRIBE, status, says, {"content": raw, "headers": headers})


def signup(status: int, says: str, name: str, data: Any) -> Case:
    return body(status, says, name, json.dumps(data), **JSON)


async def chunks(total: int) -> AsyncIterator[bytes]:
    """A body with no Content-Length, streamed in pieces, like a client that lies or
    does not know its size."""
    piece = b'{"email": "a@example.com", "name": "' + b"x" * 8000
    sent = 0
    while sent < total:
        yield piece
        sent += len(piece)
        await asyncio.sleep(0)


def api_cases(limit: int) -> list[Case]:
    ct = "Content-Type"
    return [
        # Not JSON, or not the JSON we take.
        body(400, "not valid JSON", "truncated JSON", '{"email": ', **JSON),
        body(400, "not valid JSON", "trailing garbage", '{"email": "a@example.com"} x', **JSON),
        body(400, "not valid JSON", "single quotes", "{'email': 'a@example.com'}", **JSON),
        body(400, "empty", "empty body", b"", **JSON),
        body(400, "empty", "whitespace body", b"  \n ", **JSON),
        body(400, "UTF-8", "Latin-1 bytes", b'{"email": "m\xfcller@example.com"}', **JSON),
        body(400, "nested too deeply", "nesting bomb", '{"email": ' + "[" * 5000, **JSON),
        body(400, "digits", "huge integer", '{"email": 1' + "0" * 5000 + "}", **JSON),
        body(400, "surrogate", "lone surrogate", '{"email": "a@example.com", "name": "\\ud800"}',
             **JSON),
        body(422, "more than once", "repeated key",
             '{"email": "a@example.com", "email": "b@example.com"}', **JSON),
        signup(422, "must be an object", "JSON array", ["a@example.com"]),
        signup(422, "must be an object", "JSON string", "a@example.com"),
        signup(422, "must be an object", "JSON null", None),
        # Wrong types and missing or invalid fields.
        signup(422, "is required", "no email", {"name": "Ann"}),
        signup(422, "is required", "blank email", {"email": "   "}),
        signup(422, "must be text, not a number", "email is a number", {"email": 42}),
        signup(422, "must be text, not a list", "email is a list", {"email": ["a@example.com"]}),
        signup(422, "must be text, not true/false", "email is a bool", {"email": True}),
        signup(422, "@-sign", "no at sign", {"email": "reader.example.com"}),
        signup(422, "email", "two at signs", {"email": "a@b@example.com"}),
        signup(422, "period", "dotless domain", {"email": "reader@localhost"}),
        signup(422, "at most 254", "overlong email", {"email": "a" * 250 + "@example.com"}),
        signup(422, "email", "header injection",
               {"email": "a@example.com\r\nBcc: victim@example.org"}),
        signup(422, "email", "display-name form", {"email": "Ann <a@example.com>"}),
        signup(422, "must be text, not an object", "name is an object",
               {"email": "a@example.com", "name": {"first": "Ann"}}),
        signup(422, "at most 100", "overlong name", {"email": "a@example.com", "name": "x" * 101}),
        signup(422, "line breaks", "name with newline",
               {"email": "a@example.com", "name": "Ann\nVisit http://spam.example"}),
        signup(422, "control characters", "name with NUL",
               {"email": "a@example.com", "name": "Ann\u0000"}),
        signup(422, "http(s) URL", "javascript page URL",
               {"email": "a@example.com", "page_url": "javascript:alert(1)"}),
        signup(422, "must be text", "page URL is a bool",
               {"email": "a@example.com", "page_url": True}),
        # Size.
        Case("huge body, declared", "POST", SUBSCRIBE, 413, f"limit is {limit} bytes",
             {"content": b"{" + b" " * (1024 * 1024) + b"}", "headers": JSON}),
        Case("huge body, streamed without Content-Length", "POST", SUBSCRIBE, 413,
             f"limit is {limit} bytes", {"content": chunks(1024 * 1024), "headers": JSON}),
        # Content types.
        body(415, "Unsupported Content-Type (none)", "no Content-Type", b'{"email": "a@b.co"}'),
        body(415, "text/plain", "text/plain", "email=a@example.com", **{ct: "text/plain"}),
        body(415, "application/xml", "XML",
             "<email>a@example.com</email>", **{ct: "application/xml"}),
        Case("form with a file", "POST", SUBSCRIBE, 422, "file",
             {"files": {"email": ("e.txt", b"a@example.com")}}),
        body(422, "more than once", "repeated form field",
             "email=a@example.com&email=b@example.com", **FORM),
        body(400, "fields", "too many form fields",
             "&".join(f"f{i}=x" for i in range(50)) + "&email=a@example.com", **FORM),
        body(400, "boundary", "multipart without boundary",
             b"--x\r\nContent-Disposition: form-data; name=email\r\n\r\na@b.co\r\n--x--\r\n",
             **{ct: "multipart/form-data"}),
        body(422, "@-sign", "form, invalid email", "email=nobody", **FORM),
        # Where and how.
        Case("unknown list", "POST", "/api/v1/lists/nope/subscriptions", 404, "no list 'nope'",
             {"json": {"email": "a@example.com"}}),
        Case("GET on the API", "GET", SUBSCRIBE, 405, "GET is not allowed"),
        Case("DELETE on the API", "DELETE", SUBSCRIBE, 405, "DELETE is not allowed"),
        Case("foreign origin", "POST", SUBSCRIBE, 403, "not allowed to sign people up",
             {"json": {"email": "a@example.com"}, "headers": {"Origin": "https://evil.example"}}),
        Case("foreign origin preflight", "OPTIONS", SUBSCRIBE, 403, "allowed origins",
             {"headers": {"Origin": "https://evil.example",
                          "Access-Control-Request-Method": "POST"}}),
        Case("admin API without credentials", "POST", "/api/v1/admin/lists", 401, "",
             {"json": {"slug": "x", "name": "X"}}),
    ]  # fmt: skip


def token_cases(confirm: str, unsubscribe: str, signer: TokenSigner) -> list[Case]:
    """Bad link tokens, each sent as GET and as POST to the page it targets."""
    sub_id, nonce, expires, _sig = confirm.split(".")

    def flip(token: str) -> str:
        return token[:-1] + ("A" if token[-1] != "A" else "B")

    bad = {
        "confirm": {
            "tampered signature": flip(confirm),
            "tampered id": f"{int(sub_id) + 1}.{nonce}.{expires}.{_sig}",
            # (An expired link to this confirmed reader shows the subscription, a harmless
            # repeat; an expired one to a signup still waiting: tests/test_flow.py.)
            "unsubscribe token": unsubscribe,
            "no such subscription": signer.make(Purpose.CONFIRM, 987654, nonce, 4_000_000_000),
            "garbage": "not-a-token",
            "very long": "7." + "x" * 5000,
            "percent-encoded junk": "%00%ff%3Cscript%3E",
        },
        "unsubscribe": {
            "tampered signature": flip(unsubscribe),
            "confirm token": confirm,
            "no such subscription": signer.make(Purpose.UNSUBSCRIBE, 987654, "u", 0),
            "garbage": "1.2.3",
        },
    }
    cases = []
    for page, tokens in bad.items():
        for label, token in tokens.items():
            for method in ("GET", "POST"):
                kwargs: dict[str, Any] = {"headers": {"Accept": "text/html"}}
                if page == "unsubscribe" and method == "POST":
                    kwargs = {"content": b"List-Unsubscribe=One-Click", "headers": FORM}
                cases.append(
                    Case(f"{page}: {label} ({method})", method, f"/{page}/{token}", 400,
                         "not valid any more", kwargs)
                )  # fmt: skip
    return cases


async def confirmed_reader(app: Running, smtp: SMTPServer) -> tuple[str, str]:
    """A real reader, confirmed, so the bad requests meet stored state; their tokens."""
    response = await app.client.post(SUBSCRIBE, json={"email": "kept@example.com"})
    assert response.status_code == 202
    (mail,) = await smtp.wait_for(1)
    confirm, unsubscribe = (
        mail.links[kind].rsplit("/", 1)[1] for kind in ("confirm", "unsubscribe")
    )
    assert (await app.client.post(f"/confirm/{confirm}")).status_code == 303
    await asyncio.sleep(0.3)  # let the worker settle anything the confirmation queued
    return confirm, unsubscribe


async def test_bad_requests_get_clear_4xx_and_change_nothing(
    app: Running, smtp: SMTPServer
) -> None:
    confirm, unsubscribe = await confirmed_reader(app, smtp)
    signer = TokenSigner(app.settings.secret_key.reveal())
    cases = api_cases(app.settings.max_body_bytes) + token_cases(confirm, unsubscribe, signer)
    assert len(cases) >= 30

    before = await snapshot(app.db)
    sent = len(smtp.received)
    failures: list[str] = []
    for case in cases:
        response = await app.client.request(case.method, case.path, **case.kwargs)
        text = response.text
        if response.headers.get("content-type", "").startswith("application/json"):
            text = json.dumps(response.json(), ensure_ascii=False)
        if response.status_code != case.status:
            failures.append(f"{case.name}: {response.status_code} {text[:200]}")
        elif case.says.lower() not in text.lower().replace("&#39;", "'"):
            failures.append(f"{case.name}: no {case.says!r} in {text[:300]}")
        if await snapshot(app.db) != before:
            failures.append(f"{case.name}: the database changed")
            before = await snapshot(app.db)
    await asyncio.sleep(0.3)  # time for the worker to send anything that was queued
    assert len(smtp.received) == sent, "a bad request sent an email"
    assert not failures, "\n".join(failures)

    # The reader is untouched: still subscribed, and their real links still work.
    page = await app.client.get(f"/unsubscribe/{unsubscribe}")
    assert page.status_code == 200


@pytest.mark.parametrize("content_type", ["application/json", FORM["Content-Type"]])
async def test_json_api_errors_are_json_with_per_field_messages(
    app: Running, content_type: str
) -> None:
    data = {"email": "nobody", "name": "x" * 101}
    if content_type == "application/json":
        response = await app.client.post(SUBSCRIBE, json=data)
    else:
        response = await app.client.post(SUBSCRIBE, data=data)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["error"] == "invalid_input"
    assert set(answer["fields"]) == {"email", "name"}
    assert "at most 100 characters" in answer["fields"]["name"]


async def test_malformed_http_gets_a_400_not_a_hang(served_app: Running) -> None:
    """What no HTTP library will send: a Content-Length that is not a number."""
    host, port = served_app.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {SUBSCRIBE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: lots\r\n\r\n{}".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert b"Invalid HTTP request" in answer
