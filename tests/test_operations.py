"""What an operator sees: metrics, request ids, logs, and client addresses behind a proxy."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from support import SUBSCRIBE, Running, SMTPServer, act_on_signups, serve_app

from service.models import SignupRequest
from service.settings import Secret, Settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(app: Running, **headers: str) -> Samples:
    response = await app.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


async def test_metrics_count_signups_confirms_unsubscribes_and_requests(
    app: Running, smtp: SMTPServer
) -> None:
    assert (await app.client.post(SUBSCRIBE, json={"email": "m@example.com"})).status_code == 202
    (mail,) = await smtp.wait_for(1)
    confirm, unsubscribe = (app.local(mail.links[kind]) for kind in ("confirm", "unsubscribe"))
    for _ in range(2):  # a repeat click is not a second confirmation or unsubscribe
        assert (await app.client.post(confirm)).status_code == 303
    for _ in range(3):
        one_click = await app.client.post(
            unsubscribe,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200
    # A bot filling the honeypot is counted apart from real signups.
    bot = await app.client.post(SUBSCRIBE, json={"email": "bot@example.com", "url": "x"})
    assert bot.status_code == 202

    response = await app.client.get("/metrics")
    assert confirm.rsplit("/", 1)[1] not in response.text
    assert unsubscribe.rsplit("/", 1)[1] not in response.text
    found = samples(response.text)
    assert found[("newsletter_subscribes_total", (("list", "daily"),))] == 1
    assert found[("newsletter_signups_dropped_total", (("reason", "honeypot"),))] == 1
    assert found[("newsletter_confirms_total", ())] == 1
    assert found[("newsletter_unsubscribes_total", (("method", "one-click"),))] == 1
    assert found[("newsletter_send_attempts_total", (("result", "sent"),))] >= 1
    route = (
        "newsletter_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/api/v1/lists/{slug}/subscriptions"), ("status", "202")),
    )
    assert found[route] == 2
    confirms = (
        "newsletter_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/confirm/{token}"), ("status", "303")),
    )
    assert found[confirms] == 2  # requests are counted as they came


async def test_metrics_show_the_shared_queues(settings: Settings, smtp: SMTPServer) -> None:
    """Signups wait for a worker, then their emails wait in the outbox: both are visible."""
    from support import make_list

    await make_list(settings)
    quiet = settings.replace(run_worker=False)
    async with serve_app(quiet) as app:
        for n in range(3):
            reply = await app.client.post(SUBSCRIBE, json={"email": f"q{n}@example.com"})
            assert reply.status_code == 202
        await asyncio.sleep(0.05)
        found = await scrape(app)
        assert found[("newsletter_signups_waiting", ())] == 3
        assert found[("newsletter_signups_oldest_age_seconds", ())] > 0
        assert found[("newsletter_outbox_depth", ())] == 0

        # A worker elsewhere acts on the signups; their emails are queued, not yet sent.
        assert await act_on_signups(quiet) == 3
        found = await scrape(app)
        assert found[("newsletter_signups_waiting", ())] == 0
        assert found[("newsletter_outbox_depth", ())] == 3
        assert found[("newsletter_outbox_oldest_age_seconds", ())] > 0
    assert smtp.received == []


async def test_metrics_need_the_token_when_one_is_set(settings: Settings) -> None:
    from support import make_list

    await make_list(settings)
    token = "m" * 40
    async with serve_app(settings.replace(metrics_token=Secret(token))) as app:
        refused = await app.client.get("/metrics")
        assert refused.status_code == 403 and "NEWSLETTER_METRICS_TOKEN" in refused.text
        wrong = await app.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        await scrape(app, Authorization=f"Bearer {token}")


async def test_without_a_token_metrics_answer_loopback_only(settings: Settings) -> None:
    """A private-network neighbour could watch the counters move after a signup and tell a
    new address from a known one: only loopback is answered without the token."""
    from support import make_list

    await make_list(settings)
    behind_proxy = settings.replace(trusted_proxies=("127.0.0.1/32",))
    async with serve_app(behind_proxy) as app:
        assert (await app.client.get("/metrics")).status_code == 200  # loopback
        for neighbour in ("10.1.2.3", "192.168.0.7", "fd00::7", "81.2.69.160"):
            refused = await app.client.get("/metrics", headers={"X-Forwarded-For": neighbour})
            assert refused.status_code == 403, neighbour
            assert "loopback" in refused.text
    # A proxy on the same machine that is not declared trusted: its clients look local,
    # but the request says it was forwarded.
    async with serve_app(settings) as app:
        for header in ("X-Forwarded-For", "Forwarded"):
            proxied = await app.client.get("/metrics", headers={header: "for=81.2.69.160"})
            assert proxied.status_code == 403, header
    token = "m" * 40
    async with serve_app(behind_proxy.replace(metrics_token=Secret(token))) as app:
        scraper = {"X-Forwarded-For": "10.1.2.3", "Authorization": f"Bearer {token}"}
        assert (await app.client.get("/metrics", headers=scraper)).status_code == 200


async def test_request_ids_are_made_or_kept_and_sent_back(app: Running) -> None:
    made = await app.client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    other = await app.client.get("/healthz")
    assert other.headers["x-request-id"] != made.headers["x-request-id"]
    kept = await app.client.get("/healthz", headers={"X-Request-ID": "edge-4f2a.9"})
    assert kept.headers["x-request-id"] == "edge-4f2a.9"
    junk = await app.client.get("/healthz", headers={"X-Request-ID": "x" * 65})
    assert re.fullmatch(r"[0-9a-f]{16}", junk.headers["x-request-id"])


async def consent_ips(app: Running) -> list[str | None]:
    """The client address of each signup, as its consent record will have it."""
    async with app.db.read() as session:
        return list((await session.scalars(select(SignupRequest.ip_address))).all())


async def test_forwarded_client_address_only_from_trusted_proxies(settings: Settings) -> None:
    from support import make_list

    await make_list(settings)
    forwarded = {"X-Forwarded-For": "81.2.69.160, 10.0.0.7"}
    async with serve_app(settings.replace(run_worker=False)) as app:
        # Nobody is trusted by default: a client cannot claim another address.
        reply = await app.client.post(SUBSCRIBE, json={"email": "a@example.com"}, headers=forwarded)
        assert reply.status_code == 202
        assert await consent_ips(app) == ["127.0.0.1"]
    trusted = settings.replace(run_worker=False, trusted_proxies=("127.0.0.1/32", "10.0.0.0/8"))
    async with serve_app(trusted) as app:
        reply = await app.client.post(SUBSCRIBE, json={"email": "b@example.com"}, headers=forwarded)
        assert reply.status_code == 202
        assert sorted(ip or "" for ip in await consent_ips(app)) == ["127.0.0.1", "81.2.69.160"]
        # Behind the proxy, a public reader is not on a private network: no metrics.
        assert (await app.client.get("/metrics", headers=forwarded)).status_code == 403
        assert (await app.client.get("/metrics")).status_code == 200


def test_json_logs_carry_request_ids_and_no_tokens(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    environ.update(
        NEWSLETTER_LOG_FORMAT="json",
        NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'logs.db'}",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=environ,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    secret_token = "12.abcdef.0.SECRETSECRETSECRETSECRETSECRETSECRETSECRETSEC"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "trace-77"}
                )
                with urllib.request.urlopen(request, timeout=1) as r:
                    assert r.headers["X-Request-ID"] == "trace-77"
                    break
            except OSError:
                assert process.poll() is None, "server exited during start-up"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/confirm/{secret_token}", timeout=5)
        assert refused.value.code == 400
        refused.value.close()
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    lines = [json.loads(line) for line in errors.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "service.access"]
    health = [line for line in access if line["path"] == "/healthz"]
    assert any(line["request_id"] == "trace-77" and line["status"] == 200 for line in health)
    assert any(line["path"] == "/confirm/[token]" and line["status"] == 400 for line in access)
    assert "SECRETSECRET" not in errors
