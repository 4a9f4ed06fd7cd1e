"""Test helpers: a real SMTP server on loopback, the real app served over real HTTP.

``SMTPRecorder`` is an aiosmtpd handler that records every message it accepts and can be
told to answer the next DATA commands with errors or by dropping the connection.
``serve_app`` runs ``create_app(settings)`` under uvicorn on 127.0.0.1, lifespan and all,
and yields an httpx client pointed at it.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from sqlalchemy import select

from service.app import create_app
from service.db import Database
from service.emails import Emails
from service.lists import create_list, get_list
from service.logs import silence_server_access_log
from service.mail import EmailRenderer
from service.models import Base, Subscriber, Subscription, SubscriptionStatus, utcnow
from service.settings import Settings
from service.templating import make_environment
from service.tokens import TokenSigner

PUBLIC_URL = "https://news.example.org"
SECRET = "test-secret-key-that-is-long-enough-0123456789"
SUBSCRIBE = "/api/v1/lists/daily/subscriptions"


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

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(self.received)}")
            await asyncio.sleep(0.02)
        return list(self.received)


def free_port() -> int:
    with socket.socket() as sock:
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


@asynccontextmanager
async def serve_app(settings: Settings, *, reachable: bool = False) -> AsyncIterator[Running]:
    """Serve the app; ``reachable`` makes its public URL the real local address (browsers)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
