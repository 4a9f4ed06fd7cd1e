"""Test helpers: a real SMTP server on loopback, the real app in process or on a socket.

``SMTPRecorder`` is an aiosmtpd handler that records every message it accepts and can be
told to answer the next DATA commands with errors or by dropping the connection.
``serve_app`` runs ``create_app(settings)`` with its lifespan and yields an httpx client
for it: in process over ASGI by default, under uvicorn on 127.0.0.1 where the socket is
what a test is about (raw bytes, browsers, other processes). ``run_cli`` runs the
``newsletter`` command's ``main()`` in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import logging
import os
import re
import socket as socket_
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from service.app import create_app
from service.cli import main as cli_main
from service.db import Database
from service.emails import Emails
from service.lists import create_list, get_list
from service.logs import silence_server_access_log
from service.mail import EmailRenderer
from service.models import (
    Base,
    ConsentAction,
    ConsentRecord,
    OutboxMessage,
    OutboxStatus,
    SignupRequest,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.settings import Settings
from service.templating import make_environment
from service.tokens import TokenSigner

ARTIFACTS = Path(__file__).parent / "artifacts"  # browser screenshots and downloads
PUBLIC_URL = "https://news.example.org"
SECRET = "test-secret-key-that-is-long-enough-0123456789"
SUBSCRIBE = "/api/v1/lists/daily/subscriptions"
PASSWORD = "correct horse battery"  # the admin user's, in the ``admin`` fixture
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def links(self) -> dict[str, str]:
        """The confirmation ("" if none) and unsubscribe URLs in the text part."""
        text = self.message.get_body(preferencelist=("plain",))
        assert text is not None
        found = re.findall(r"https?://\S+", text.get_content())
        confirm = [u for u in found if "/confirm/" in u]
        unsubscribe = [u for u in found if "/unsubscribe/" in u]
        assert len(confirm) <= 1 and len(unsubscribe) == 1, found
        return {"confirm": confirm[0] if confirm else "", "unsubscribe": unsubscribe[0]}


@dataclass
class SMTPRecorder:
    """aiosmtpd handler: accepts mail, or plays the scripted faults first."""

    received: list[Received] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    attempted_ids: list[str] = field(default_factory=list)  # Message-ID of every DATA
    peers: list[Any] = field(default_factory=list)  # client address of every DATA
    connections: dict[Any, Any] = field(default_factory=dict)  # peer -> server protocol
    loop: asyncio.AbstractEventLoop | None = None
    delay: float = 0.0  # seconds to think before accepting each message
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        headers = message_from_bytes(data.split(b"\r\n\r\n", 1)[0], policy=default_policy)
        with self.lock:
            self.attempted_ids.append(str(headers["Message-ID"]))
            self.peers.append(session.peer)
            self.connections[session.peer] = server
            self.loop = asyncio.get_running_loop()
            fault = self.faults.pop(0) if self.faults else None
        if fault == "drop":
            server.transport.abort()  # the connection dies mid-transaction
            return "421 gone"
        if fault is not None:
            return fault
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), data))
        return "250 OK queued"


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: SMTPRecorder

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def connection_count(self) -> int:
        """How many client connections carried at least one message."""
        return len(set(self.handler.peers))

    def hang_up(self) -> None:
        """Close every connection from the server's side, as an idle timeout would."""
        loop = self.handler.loop
        assert loop is not None
        for server in list(self.handler.connections.values()):
            loop.call_soon_threadsafe(server.transport.close)

    def fail_next(self, *replies: str) -> None:
        """Answer the next DATA commands with these replies ("drop" closes the connection)."""
        self.handler.faults.extend(replies)

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(self.received)}")
            await asyncio.sleep(0.02)
        return list(self.received)


def free_port() -> int:
    with socket_.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Running:
    client: httpx.AsyncClient
    settings: Settings
    db: Database

    @property
    def url(self) -> str:
        return str(self.client.base_url).rstrip("/")

    def local(self, public_url: str) -> str:
        """A link from an email, pointed at the test server (path and query only)."""
        assert public_url.startswith(self.settings.base_url + "/"), public_url
        parts = urlsplit(public_url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


# Where the in-process app answers: no socket listens there, so a test that hands this
# address to a browser or another process fails loudly; those use ``socket=True``.
IN_PROCESS_URL = "http://127.0.0.1:8000"
# A bound on waits for start-up and shutdown (the worker's grace included), never reached
# unless something hangs: generous, for a busy machine.
LIFESPAN_TIMEOUT = 60.0


@asynccontextmanager
async def serve_app(
    settings: Settings, *, socket: bool = False, reachable: bool = False
) -> AsyncIterator[Running]:
    """Run the app, lifespan and worker included, and yield a client for it.

    In process over ASGI by default: every request comes from 127.0.0.1, as over loopback.
    ``socket`` serves it under uvicorn on 127.0.0.1 instead, for raw or malformed HTTP;
    ``reachable`` does too and makes its public URL that address (browsers, the fuzzer).
    """
    if socket or reachable:
        async with _serve_on_socket(settings, reachable=reachable) as running:
            yield running
        return
    app = create_app(settings)
    manager = LifespanManager(
        app, startup_timeout=LIFESPAN_TIMEOUT, shutdown_timeout=LIFESPAN_TIMEOUT
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(manager)
        except Exception as exc:  # as under uvicorn: a failed start-up stops the server
            raise RuntimeError(f"server start-up failed: {exc!r}") from exc
        db = Database.from_url(settings.database_url)
        stack.push_async_callback(db.dispose)
        # As uvicorn serves it: an error in the app is the 500 page a reader gets.
        transport = httpx.ASGITransport(
            app=manager.app, raise_app_exceptions=False, client=("127.0.0.1", 50000)
        )
        client = httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_URL, timeout=10)
        await stack.enter_async_context(client)
        yield Running(client, settings, db)


@asynccontextmanager
async def _serve_on_socket(settings: Settings, *, reachable: bool) -> AsyncIterator[Running]:
    sock = socket_.socket()
    sock.setsockopt(socket_.SOL_SOCKET, socket_.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if reachable:
        settings = settings.replace(base_url=f"http://127.0.0.1:{port}")
    app = create_app(settings)
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, proxy_headers=False
    )  # as `newsletter serve` runs it: forwarded headers are the app's business
    silence_server_access_log()  # as `newsletter serve` does
    server = uvicorn.Server(config)

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when the lifespan fails; a test should not
            raise RuntimeError(f"server start-up failed (exit status {exc.code})") from None

    task = asyncio.create_task(serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)
        db = Database.from_url(settings.database_url)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            try:
                yield Running(client, settings, db)
            finally:
                await db.dispose()
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()


@dataclass
class CLIResult:
    """What a run of the command left, as ``subprocess.run`` reports it."""

    returncode: int
    stdout: Any  # str, or bytes if run with text=False
    stderr: Any


def run_cli(
    args: Sequence[str], env: Mapping[str, str], *, cwd: str | None = None, text: bool = True
) -> CLIResult:
    """``newsletter ARGS`` in this process, as a user's shell runs it: this environment (no
    NEWSLETTER_* setting from outside), its own stdout and stderr, its exit status.

    The command runs in a thread of its own (it starts its own event loop), so an async test
    can wait for it off its loop. The process-wide things it changes (environment, standard
    streams, logging, working directory) are put back afterwards.
    """
    result: list[CLIResult] = []
    failure: list[BaseException] = []

    def command() -> None:
        try:
            result.append(_run_main(args, env, cwd, text))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    with _CLI_LOCK:
        thread = threading.Thread(target=command, name="newsletter-cli")
        thread.start()
        thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def cli(args: Sequence[str], settings: Settings) -> CLIResult:
    """``newsletter ARGS`` on this app's database, output as bytes, waited for off the event
    loop: an app served on the loop shares it, and its worker must be able to finish a
    write the command waits on."""
    env = {"NEWSLETTER_DATABASE_URL": settings.database_url}
    return await asyncio.to_thread(run_cli, args, env, text=False)


_CLI_LOCK = threading.Lock()


def _run_main(
    args: Sequence[str], env: Mapping[str, str], cwd: str | None, text: bool
) -> CLIResult:
    saved_environ = dict(os.environ)
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level)
    access = logging.getLogger("uvicorn.access")
    saved_access = access.disabled
    saved_cwd = os.getcwd()
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    try:
        for key in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
            del os.environ[key]
        os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli_main(list(args))
            except SystemExit as exit_:  # argparse: --help, usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
            stdout.flush()
            stderr.flush()
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        for handler in root.handlers:
            if handler not in saved_logging[0]:
                handler.close()
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
        access.disabled = saved_access
    if text:
        return CLIResult(code, out.getvalue().decode(), err.getvalue().decode())
    return CLIResult(code, out.getvalue(), err.getvalue())


async def signups_acted_on(db: Database, timeout: float = 60.0) -> None:
    """Wait until the worker has acted on every signup taken in (the intake is empty)."""
    deadline = time.monotonic() + timeout
    while True:
        async with db.read() as session:
            if await session.scalar(select(SignupRequest.id).limit(1)) is None:
                return
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not act on the signups taken in")
        await asyncio.sleep(0.02)


async def clear_of_window_end(seconds: int, margin: float = 10.0) -> None:
    """Wait out the end of the current fixed rate-limit window of ``seconds`` if it is less
    than ``margin`` away, so that the requests a test counts fall into one window (across
    a boundary a fixed window lets through up to twice its rate, as it is meant to)."""
    left = seconds - time.time() % seconds
    if left < margin:
        await asyncio.sleep(left + 0.1)


async def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema, through the migrations."""
    db = Database.from_url(url)
    try:
        await db.migrate()
    finally:
        await db.dispose()


def process_env(db_url: str, smtp: SMTPServer, **extra: str) -> dict[str, str]:
    """The environment of a `newsletter` process run by a test: this database, this SMTP
    server, nothing from the outer environment's NEWSLETTER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            **service_env(db_url, smtp),
            "NEWSLETTER_WORKER_POLL_INTERVAL": "100ms",
            "NEWSLETTER_LOG_LEVEL": "WARNING",
            # Scripted clients send no form stamp; the stamp's own tests turn this on.
            "NEWSLETTER_MIN_FILL_TIME": "0",
            # Nor do they solve the proof of work a surge asks; tests/test_flood.py does.
            "NEWSLETTER_POW_SURGE_LIST": "",
            "NEWSLETTER_POW_SURGE_CLIENT": "",
            **extra,
        }
    )
    return env


def service_env(db_url: str, smtp: SMTPServer) -> dict[str, str]:
    """What every service a test runs, in its process or another, is set up with."""
    return {
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_BASE_URL": PUBLIC_URL,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_SMTP_HOST": smtp.host,
        "NEWSLETTER_SMTP_PORT": str(smtp.port),
        "NEWSLETTER_SMTP_TLS": "none",
        "NEWSLETTER_SMTP_TIMEOUT": "5s",
    }


async def act_on_signups(settings: Settings) -> int:
    """Do a worker's first step: act on the signups taken in (queue their emails, send none)."""
    from service.components import assemble
    from service.metrics import Metrics

    db = Database.from_url(settings.database_url)
    try:
        parts = await assemble(settings, db, make_environment(), Metrics())
        handled = 0
        while step := await parts.intake.process():
            handled += step
        return handled
    finally:
        await db.dispose()


async def queue_confirmations(settings: Settings, count: int) -> list[str]:
    """``count`` pending subscriptions, each with a confirmation in the outbox; Message-IDs."""
    await make_list(settings)
    db = Database.from_url(settings.database_url)
    emails = emails_for(settings)
    try:
        mailing_list = await get_list(db, "daily")
        assert mailing_list is not None
        now = utcnow()
        async with db.write() as session:
            people = [Subscriber(email=f"reader{i}@example.com") for i in range(count)]
            session.add_all(people)
            await session.flush()
            subs = [
                Subscription(
                    list_id=mailing_list.id,
                    subscriber_id=p.id,
                    status=SubscriptionStatus.PENDING,
                    confirm_nonce=f"nonce{i}",
                    confirmation_sent_at=now,
                )
                for i, p in enumerate(people)
            ]
            session.add_all(subs)
            await session.flush()
            rows = [emails.confirmation(s, p.email, now) for s, p in zip(subs, people, strict=True)]
            session.add_all(rows)
        return [r.message_id for r in rows]
    finally:
        await db.dispose()


async def make_list(settings: Settings, slug: str = "daily", **kwargs: Any) -> None:
    db = Database.from_url(settings.database_url)
    try:
        await db.migrate()
        options: dict[str, Any] = {
            "name": "Frühstücks-Briefing",
            "origins": ["https://www.example.com"],
        }
        options.update(kwargs)
        await create_list(db, slug=slug, **options)
    finally:
        await db.dispose()


@asynccontextmanager
async def fresh_postgres_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the server at ``server_url``; dropped after."""
    import secrets as _secrets

    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    name = f"nl_test_{_secrets.token_hex(6)}"
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(drivername="postgresql+asyncpg", database=name).render_as_string(
                hide_password=False
            )
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def visible(response: httpx.Response) -> str:
    """A page's text as a reader sees it (entities decoded)."""
    return html.unescape(response.text)


def emails_for(settings: Settings) -> Emails:
    """The app's link and message builder, to make the links its emails would carry."""
    signer = TokenSigner(settings.secret_key.reveal())
    return Emails(settings, signer, EmailRenderer(make_environment()))


async def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to show a request changed nothing."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with db.read() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).all()
            tables[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return tables


async def sign_in(
    app: Running,
    password: str = PASSWORD,
    username: str = "alice",
    ip_headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Sign in through the form; the headers that carry the session afterwards."""
    response = await app.client.post(
        "/admin/login",
        data={"username": username, "password": password, "next": "/admin/"},
        headers={**SAME_SITE, **(ip_headers or {})},
    )
    assert response.status_code == 303, visible(response)
    cookie = SimpleCookie(response.headers["set-cookie"])
    [(name, morsel)] = cookie.items()
    return {"Cookie": f"{name}={morsel.value}", **SAME_SITE}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Subscribers of every awkward kind, for exports and imports ----------------------------

T0 = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
T1 = datetime(2025, 1, 2, 3, 10, 0, tzinfo=UTC)
T2 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
PAGE = "https://www.example.com/article?id=1,2"

# (email, name, attributes, status, failed delivery)
PEOPLE: list[tuple[str, str | None, dict[str, Any], str, bool]] = [
    ("a@example.com", "Smith, Jo", {"n": 2, "city": "Köln"}, "confirmed", False),
    ("b@example.com", 'Say "hi"', {}, "confirmed", False),
    ("c@example.com", "line one\nline two", {}, "confirmed", False),
    ("d@example.com", "Zoë 😀 Ünal", {}, "confirmed", False),
    ("e@example.com", '=HYPERLINK("http://evil.example","click")', {}, "confirmed", False),
    ("f@example.com", "+1 555 0100", {}, "confirmed", False),
    ("g@example.com", "-2+3", {}, "confirmed", False),
    ("h@example.com", "@SUM(A1:A9)", {}, "confirmed", False),
    ("i@example.com", "\tTabbed", {}, "confirmed", False),
    ("j@example.com", "\rReturn", {}, "confirmed", False),
    ("=1+2@example.com", None, {}, "confirmed", False),
    ("k@example.com", "'=quoted already", {}, "confirmed", False),
    ("l@example.com", "Left", {}, "unsubscribed", False),
    ("m@example.com", "Bounced", {}, "pending", True),
    ("n@example.com", "Waiting", {}, "pending", False),
]


async def add_people(app: Running, slug: str = "daily", people: Any = PEOPLE) -> None:
    """Subscribers with fixed times, straight into the database."""
    mailing_list = await get_list(app.db, slug)
    assert mailing_list is not None
    async with app.db.write() as session:
        for email, name, attributes, status, failed in people:
            subscriber = Subscriber(email=email, name=name, attributes=attributes, created_at=T0)
            session.add(subscriber)
            await session.flush()
            sub = Subscription(
                list_id=mailing_list.id,
                subscriber_id=subscriber.id,
                status=SubscriptionStatus(status),
                confirm_nonce="n",
                subscribed_at=T0,
                confirmed_at=T1 if status != "pending" else None,
                unsubscribed_at=T2 if status == "unsubscribed" else None,
            )
            session.add(sub)
            await session.flush()
            session.add(
                ConsentRecord(
                    subscription_id=sub.id,
                    action=ConsentAction.SUBSCRIBE,
                    created_at=T0,
                    page_url=PAGE,
                    wording="Yes",
                    method="form",
                )
            )
            if failed:
                session.add(
                    OutboxMessage(
                        template="confirm",
                        to_address=email,
                        subscription_id=sub.id,
                        message_id=f"<{email}>",
                        status=OutboxStatus.FAILED,
                    )
                )
