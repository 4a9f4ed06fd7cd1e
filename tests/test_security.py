"""HTTP hardening as a browser and an attacker see it: the Content-Security-Policy of every
page, security headers, CORS on the public API only, escaped hostile input in every page
and email, and a body trickled too slowly being cut off."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support import (
    PASSWORD,
    PUBLIC_URL,
    SUBSCRIBE,
    Running,
    SMTPServer,
    make_list,
    serve_app,
    sign_in,
    visible,
)

from service.auth.users import create_user
from service.lists import update_list
from service.settings import Settings
from service.web.middleware import BodyLimitMiddleware
from service.web.refusals import exception_handlers

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = SCRIPT + IMG
HTML = {"Accept": "text/html"}
ALLOWED = "https://www.example.com"


class Tags(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def tags_of(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(text)
    parser.close()
    return parser.tags


def policy(response: httpx.Response) -> dict[str, str]:
    csp = response.headers["content-security-policy"]
    directives = (part.strip().split(None, 1) for part in csp.split(";") if part.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def check_page(response: httpx.Response, *, framed_by: str = "'none'") -> str:
    """The page's nonce, after checking its policy and that everything inline carries it."""
    where = str(response.url)
    assert response.headers["content-type"].startswith("text/html"), where
    csp = policy(response)
    assert "'unsafe-inline'" not in response.headers["content-security-policy"], where
    assert "'unsafe-eval'" not in response.headers["content-security-policy"], where
    assert csp["default-src"] == "'none'", where
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'", where
    assert csp["frame-ancestors"] == framed_by, where
    assert csp["form-action"] in {"'self'", "'none'"}, where
    [nonce] = re.findall(r"'nonce-([A-Za-z0-9_-]{16,})'", csp["script-src"])
    assert csp["style-src"] == f"'nonce-{nonce}'", where
    for tag, attrs in tags_of(response.text):
        if tag in {"script", "style"}:
            assert attrs.get("nonce") == nonce, (where, tag, attrs)
        assert "style" not in attrs, (where, tag, attrs)  # nonces do not cover attributes
        assert not [a for a in attrs if a.startswith("on")], (where, tag, attrs)
        if tag == "script":
            assert attrs.get("src") in {"/widget.js", "/admin/assets/admin.js"}, (where, attrs)
    check_headers(response)
    return nonce


def check_headers(response: httpx.Response) -> None:
    """The security headers; JSON needs only nosniff (it is never shown as a document)."""
    where = str(response.url)
    assert response.headers["x-content-type-options"] == "nosniff", where
    if response.headers.get("content-type", "").startswith("application/json"):
        assert "content-security-policy" not in response.headers, where
        return
    assert response.headers["cross-origin-opener-policy"] == "same-origin", where
    assert "camera=()" in response.headers["permissions-policy"], where
    assert response.headers["referrer-policy"] in {
        "no-referrer",
        "strict-origin-when-cross-origin",
    }, where
    assert "content-security-policy" in response.headers, where


async def confirmation_links(app: Running, smtp: SMTPServer, count: int) -> tuple[str, str]:
    mail = (await smtp.wait_for(count))[count - 1].message
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    confirm = re.findall(r"https://\S+/confirm/\S+", text)[0]
    unsubscribe = re.findall(r"https://\S+/unsubscribe/\S+", text)[0]
    return app.local(confirm), app.local(unsubscribe)


async def test_every_page_has_a_nonce_policy_and_a_fresh_nonce(
    app: Running, smtp: SMTPServer
) -> None:
    client = app.client
    nonces: list[str] = []
    # Public pages, the hosted form and its result pages, errors.
    for path in ("/", "/subscribe/daily", "/nowhere", "/subscribe/nothing", "/confirm/bogus"):
        nonces.append(check_page(await client.get(path, headers=HTML)))
    form_post = {"Accept": "text/html", "Origin": PUBLIC_URL}
    accepted = await client.post(SUBSCRIBE, data={"email": "page@example.com"}, headers=form_post)
    assert accepted.status_code == 202
    invalid = await client.post(SUBSCRIBE, data={"email": "nope"}, headers=form_post)
    assert invalid.status_code == 422
    nonces += [check_page(accepted), check_page(invalid)]
    # The pages behind the links in emails, before and after the button.
    confirm, unsubscribe = await confirmation_links(app, smtp, 1)
    for method, path in (
        ("GET", confirm),
        ("POST", confirm),
        ("GET", unsubscribe),
        ("POST", unsubscribe),
        ("GET", unsubscribe),
    ):
        response = await client.request(method, path, headers=HTML)
        if response.status_code == 303:  # confirmed: the page is where it points
            assert (method, path) == ("POST", confirm)
            response = await client.get(response.headers["location"], headers=HTML)
        assert response.status_code == 200, (method, path)
        nonces.append(check_page(response))
    # The admin side, signed out and signed in.
    await create_user(app.db, "alice", PASSWORD)
    login = await client.get("/admin/login", headers=HTML)
    nonces.append(check_page(login))
    refused = await client.post(
        "/admin/login", data={"username": "alice", "password": "x"}, headers=HTML
    )
    assert refused.status_code == 403
    nonces.append(check_page(refused))
    session = {**await sign_in(app), **HTML}
    for path in (
        "/admin/",
        "/admin/lists",
        "/admin/lists/daily",
        "/admin/subscribers",
        "/admin/subscribers?q=page",
        "/admin/subscribers/1",
        "/admin/exports",
        "/admin/exports/download?format=nonsense",
        "/admin/subscribers/999",
    ):
        response = await client.get(path, headers=session)
        assert response.status_code in {200, 404, 422}, path
        nonces.append(check_page(response))
        assert policy(response).get("frame-src") in {None, "'self'"}
    editor = await client.get("/admin/lists/daily", headers=session)
    assert policy(editor)["frame-src"] == "'self'", "the editor frames its preview"
    assert 'nonce="' in editor.text and "/admin/assets/admin.js" in editor.text
    # The preview is framed by the editor (same origin only) and runs the widget.
    preview = await client.get("/admin/lists/daily/preview", headers=session)
    nonces.append(check_page(preview, framed_by="'self'"))
    assert policy(preview)["connect-src"] == "'self'"
    assert preview.headers["x-frame-options"] == "SAMEORIGIN"
    # JSON and scripts are never shown as a document: nosniff keeps it so, and the headers
    # only a document obeys are left off.
    for path in ("/api/v1/lists/daily/widget", "/widget.js", "/api/v1/openapi.json", "/health"):
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        for page_only in ("content-security-policy", "x-frame-options", "permissions-policy"):
            assert page_only not in response.headers, (path, page_only)
    # Anything else that is not a page gets them all, with a policy that allows nothing.
    text = await client.get("/robots.txt")
    assert text.headers["content-type"].startswith("text/plain")
    check_headers(text)
    assert policy(text)["default-src"] == "'none'"
    assert len(set(nonces)) == len(nonces), "a fresh nonce for every response"


async def test_hsts_only_when_the_public_url_is_https(settings: Settings) -> None:
    await make_list(settings)
    async with serve_app(settings) as app:
        for path in ("/", "/api/v1/lists/daily/widget", "/nowhere"):
            hsts = (await app.client.get(path)).headers["strict-transport-security"]
            assert hsts.startswith("max-age=31536000"), path
    async with serve_app(settings.replace(base_url="http://127.0.0.1:9")) as app:
        assert "strict-transport-security" not in (await app.client.get("/")).headers


async def test_mail_catcher_pages_and_the_sandboxed_message(settings: Settings) -> None:
    catcher = settings.replace(smtp_host="")
    await make_list(catcher, name=HOSTILE)
    async with serve_app(catcher) as app:
        await app.client.post(SUBSCRIBE, json={"email": "dev@example.com", "name": HOSTILE})
        for _ in range(200):
            inbox = await app.client.get("/dev/mail")
            if "/dev/mail/1" in inbox.text:
                break
            await asyncio.sleep(0.05)
        nonces = [check_page(inbox)]
        message = await app.client.get("/dev/mail/1")
        nonces.append(check_page(message))
        assert policy(message)["frame-src"] == "'self'"
        assert len(set(nonces)) == 2
        # The email's own HTML, as sent: styled by attributes, allowed by their hashes only.
        framed = await app.client.get("/dev/mail/1/html")
        csp = policy(framed)
        assert csp["sandbox"].startswith("allow-popups")
        assert "allow-scripts" not in csp["sandbox"] and "allow-same-origin" not in csp["sandbox"]
        assert csp["style-src"].startswith("'unsafe-hashes' 'sha256-")
        assert "'unsafe-inline'" not in framed.headers["content-security-policy"]
        assert csp["frame-ancestors"] == "'self'"
        assert 'style="' in framed.text
        for text in (inbox.text, message.text, framed.text):
            assert SCRIPT not in text and "<img" not in text


async def test_cors_only_for_allowed_origins_exactly_and_only_on_the_public_api(
    app: Running,
) -> None:
    client = app.client
    allowed = await client.post(
        SUBSCRIBE, json={"email": "cors@example.com"}, headers={"Origin": ALLOWED}
    )
    assert allowed.status_code == 202
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "Origin" in allowed.headers["vary"]
    assert "access-control-allow-credentials" not in allowed.headers
    # Errors a page on an allowed site may read say so with the same headers.
    invalid = await client.post(SUBSCRIBE, json={"email": "x"}, headers={"Origin": ALLOWED})
    assert invalid.status_code == 422
    assert invalid.headers["access-control-allow-origin"] == ALLOWED
    # Origins that merely look like an allowed one are foreign.
    for foreign in (
        "https://evil.example.net",
        "https://www.example.com.evil.net",
        "http://www.example.com",
        "https://example.com",
        "https://sub.www.example.com",
        "https://www.example.com:8443",
        "null",
    ):
        post = await client.post(
            SUBSCRIBE, json={"email": "x@example.com"}, headers={"Origin": foreign}
        )
        preflight = await client.options(
            SUBSCRIBE, headers={"Origin": foreign, "Access-Control-Request-Method": "POST"}
        )
        for response in (post, preflight):
            assert response.status_code == 403, (foreign, response.request.method)
            assert "access-control-allow-origin" not in response.headers, foreign
            assert "Origin" in response.headers["vary"], foreign
    # The preflight of an allowed origin.
    preflight = await client.options(
        SUBSCRIBE,
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert preflight.headers["access-control-allow-methods"] == "POST"
    assert preflight.headers["access-control-allow-headers"].lower() == "content-type"
    assert "Origin" in preflight.headers["vary"]
    assert "access-control-allow-credentials" not in preflight.headers
    # Without an Origin (not a browser's cross-site call) caches are still told it matters.
    plain = await client.post(SUBSCRIBE, json={"email": "plain@example.com"})
    assert plain.status_code == 202 and "Origin" in plain.headers["vary"]
    assert "access-control-allow-origin" not in plain.headers
    unknown = await client.post(
        "/api/v1/lists/nothing/subscriptions", json={}, headers={"Origin": ALLOWED}
    )
    assert unknown.status_code == 404 and "Origin" in unknown.headers["vary"]
    # Nothing else answers cross-origin with credentials, and the admin API not at all.
    await create_user(app.db, "alice", PASSWORD)
    session = await sign_in(app)
    for method, path in (
        ("GET", "/api/v1/admin/lists"),
        ("OPTIONS", "/api/v1/admin/lists"),
        ("GET", "/admin/"),
        ("GET", "/"),
        ("GET", "/api/v1/lists/daily/widget"),
        ("GET", "/widget.js"),
        ("GET", "/api/v1/openapi.json"),
    ):
        response = await client.request(method, path, headers={**session, "Origin": ALLOWED})
        assert "access-control-allow-credentials" not in response.headers, path
        if "/admin" in path:
            assert "access-control-allow-origin" not in response.headers, path
    for response in (allowed, invalid, preflight, plain, unknown):
        assert response.headers.get("access-control-allow-origin") != "*"


async def test_hostile_names_and_texts_are_shown_escaped_in_pages_and_emails(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings, name=HOSTILE, consent_text=IMG + SCRIPT)
    async with serve_app(settings) as app:
        await update_list(
            app.db,
            "daily",
            {
                "title": SCRIPT,
                "text": IMG,
                "button": IMG,
                "success": SCRIPT,
                "consentCheckbox": "true",
            },
        )
        signup = await app.client.post(
            SUBSCRIBE, json={"email": "evil@example.com", "name": HOSTILE, "consent": "yes"}
        )
        assert signup.status_code == 202, signup.text
        confirm, unsubscribe = await confirmation_links(app, smtp, 1)
        await create_user(app.db, "alice", PASSWORD)
        session = {**await sign_in(app), **HTML}

        pages: dict[str, httpx.Response] = {}
        for path in ("/subscribe/daily", confirm, unsubscribe):
            pages[path] = await app.client.get(path, headers=HTML)
        done = await app.client.post(confirm, headers=HTML)
        assert done.status_code == 303
        pages["confirmed"] = await app.client.get(done.headers["location"], headers=HTML)
        pages["result"] = await app.client.post(
            SUBSCRIBE, data={"email": "bad"}, headers={**HTML, "Origin": PUBLIC_URL}
        )
        for path in (
            "/admin/",
            "/admin/lists",
            "/admin/lists/daily",
            "/admin/lists/daily/preview",
            "/admin/subscribers",
            "/admin/subscribers?q=evil",
            "/admin/subscribers/1",
            "/admin/exports",
        ):
            pages[path] = await app.client.get(path, headers=session)
        shown_name = {"/admin/subscribers", "/admin/subscribers?q=evil", "/admin/subscribers/1"}
        for where, response in pages.items():
            assert response.status_code in {200, 422}, where
            check_page(response, framed_by="'self'" if "preview" in where else "'none'")
            assert SCRIPT not in response.text and "<img" not in response.text, where
            if where in shown_name:
                assert HOSTILE in visible(response), f"{where} shows the name, escaped"
            elif "preview" not in where:
                assert SCRIPT in visible(response) or IMG in visible(response), where
        assert IMG + SCRIPT in visible(pages["/subscribe/daily"]), "consent wording, escaped"
        assert IMG + SCRIPT in visible(pages["/admin/subscribers/1"]), "consent record, escaped"

        # The emails: the HTML part escapes, the text part is text.
        for received in smtp.received:
            html_part = received.message.get_body(preferencelist=("html",))
            assert html_part is not None
            body = html_part.get_content()
            assert SCRIPT not in body and "<img" not in body
            assert html.escape(HOSTILE, quote=False) in body or HOSTILE in html.unescape(body)
            assert [tag for tag, _ in tags_of(body) if tag in {"script", "img", "iframe"}] == []


async def test_every_response_carries_the_headers_even_errors(app: Running) -> None:
    for method, path, headers in (
        ("GET", "/nowhere", HTML),
        ("GET", "/api/v1/nowhere", {}),
        ("DELETE", SUBSCRIBE, {}),
        ("GET", "/robots.txt", {}),
    ):
        response = await app.client.request(method, path, headers=headers)
        assert response.status_code < 500, path
        check_headers(response)
    too_big = await app.client.post(
        SUBSCRIBE, content=b"x" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "payload_too_large"


# A request body trickled a byte at a time (slowloris) is cut off.


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


@asynccontextmanager
async def tiny_server(body_seconds: float) -> AsyncIterator[int]:
    app = Starlette(
        routes=[Route("/api/echo", echo, methods=["POST"])],
        middleware=[Middleware(BodyLimitMiddleware, max_bytes=10_000, body_seconds=body_seconds)],
        exception_handlers=exception_handlers,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_a_body_trickled_slowly_is_cut_off_with_a_408() -> None:
    async with tiny_server(body_seconds=0.6) as port:
        async with httpx.AsyncClient() as client:
            quick = await client.post(f"http://127.0.0.1:{port}/api/echo", content=b"x" * 5000)
            assert quick.json() == {"received": 5000}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        answer = b""
        sent = 0
        # A byte every 50 ms: the whole body would take 50 s. The answer must come while
        # the body is still incomplete, so the server cut the request off rather than wait.
        while sent < 999 and not answer:
            writer.write(b"x")
            sent += 1
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                answer += await asyncio.wait_for(reader.read(65536), 0.05)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert sent < 1000, "the whole body was sent"
        assert b'"error":"request_timeout"' in answer
        assert b"connection: close" in answer.lower()
        # And the server hangs up rather than wait for the rest.
        await asyncio.wait_for(reader.read(), 30)
        assert reader.at_eof()
        writer.close()


async def test_a_body_that_arrives_in_time_is_unaffected() -> None:
    async with tiny_server(body_seconds=20.0) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):
            writer.write(b"y")
            await writer.drain()
            await asyncio.sleep(0.02)
        answer = await asyncio.wait_for(reader.read(65536), 30)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert answer.endswith(b'{"received":10}')
        writer.close()


async def test_trailing_slash_redirects_never_follow_a_forged_host(admin: Running) -> None:
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    for path, location in (
        ("/admin/lists/", "/admin/lists"),
        ("/admin/login/?next=/admin/lists", "/admin/login?next=/admin/lists"),
        ("/healthz/", "/healthz"),
        ("/api/v1/admin/lists/", "/api/v1/admin/lists"),
    ):
        response = await admin.client.get(path, headers=evil)
        assert response.status_code == 307, path
        assert response.headers["location"] == location, path
    for path in ("//evil.example/", "//evil.example/admin/lists/", "//healthz/", "/nothing/"):
        request = admin.client.build_request("GET", "/", headers=evil)
        request.url = request.url.copy_with(raw_path=path.encode())
        response = await admin.client.send(request)
        assert response.status_code == 404, path
        assert "location" not in response.headers
