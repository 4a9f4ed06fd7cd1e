"""Pages, headers, CORS and logs: what a reader, a browser and an operator see."""

from __future__ import annotations

import logging
import re

import pytest
from support import PUBLIC_URL, SUBSCRIBE, Running, SMTPServer, make_list, serve_app

from service.settings import Settings


def first_link(mail_text: str, kind: str) -> str:
    return re.findall(rf"https://\S+/{kind}/\S+", mail_text)[0]


def text_of(smtp: SMTPServer, index: int = 0) -> str:
    body = smtp.received[index].message.get_body(preferencelist=("plain",))
    assert body is not None
    content: str = body.get_content()
    return content


async def test_links_come_from_base_url_not_the_host_header(app: Running, smtp: SMTPServer) -> None:
    await app.client.post(
        SUBSCRIBE,
        json={"email": "host@example.com"},
        headers={"Host": "evil.example.net", "X-Forwarded-Host": "evil.example.net"},
    )
    await smtp.wait_for(1)
    assert "evil" not in smtp.received[0].data.decode()
    assert first_link(text_of(smtp), "confirm").startswith(PUBLIC_URL + "/confirm/")


async def test_tokens_never_reach_the_logs(
    app: Running, smtp: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await app.client.post(SUBSCRIBE, json={"email": "logs@example.com"})
    await smtp.wait_for(1)
    confirm = first_link(text_of(smtp), "confirm")
    unsubscribe = first_link(text_of(smtp), "unsubscribe")
    await app.client.get(app.local(confirm))
    await app.client.post(app.local(confirm))
    await app.client.post(app.local(unsubscribe))
    await app.client.get(app.local(confirm) + "x")  # an invalid one, too
    # Everything the service and its server logged: not this test's own HTTP client
    # (httpx) nor the receiving mail server (aiosmtpd's mail.log), which see links by nature.
    logged = "\n".join(
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith(("httpx", "httpcore", "mail.log"))
    )
    for link in (confirm, unsubscribe):
        token = link.rsplit("/", 1)[1]
        assert token[-20:] not in logged
    assert "POST /confirm/[token] 303" in logged
    assert "POST /unsubscribe/[token] 200" in logged


async def test_html_pages_carry_security_headers(app: Running) -> None:
    for path in ("/", "/confirm/bogus", "/nowhere"):
        response = await app.client.get(path, headers={"Accept": "text/html"})
        assert response.headers["content-type"].startswith("text/html"), path
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in response.text
        assert "http://" not in response.text and "https://" not in response.text, (
            "pages load no external assets"
        )


async def test_unknown_routes_answer_in_the_callers_language(app: Running) -> None:
    api = await app.client.get("/api/v1/nothing")
    assert api.status_code == 404 and api.json()["error"] == "not_found"
    page = await app.client.get("/nothing", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "Sorry" in page.text
    wrong = await app.client.delete(SUBSCRIBE)
    assert wrong.status_code == 405 and "DELETE is not allowed" in wrong.json()["message"]


async def test_health(app: Running) -> None:
    response = await app.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_cors_preflight_for_allowed_and_refused_origins(app: Running) -> None:
    allowed = await app.client.options(
        SUBSCRIBE,
        headers={
            "Origin": "https://www.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "https://www.example.com"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in allowed.headers
    assert "Origin" in allowed.headers["vary"]

    refused = await app.client.options(
        SUBSCRIBE,
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert "not allowed" in refused.json()["message"]

    own = await app.client.post(
        SUBSCRIBE, json={"email": "own@example.com"}, headers={"Origin": PUBLIC_URL}
    )
    assert own.status_code == 202, "the service's own pages may always post"


async def test_single_opt_in_list_sends_a_welcome_with_unsubscribe(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings, "open", name="Open List", double_opt_in=False)
    async with serve_app(settings) as app:
        response = await app.client.post(
            "/api/v1/lists/open/subscriptions", json={"email": "w@example.com"}
        )
        assert response.status_code == 202
        [mail] = await smtp.wait_for(1)
        assert mail.message["Subject"] == "You are subscribed to Open List"
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/confirm/" not in text_of(smtp)
        unsubscribe = mail.message["List-Unsubscribe"].strip("<>")
        assert (
            await app.client.post(app.local(unsubscribe), data={"List-Unsubscribe": "One-Click"})
        ).status_code == 200


async def test_mail_catcher_shows_mail_with_clickable_links(
    settings: Settings, smtp: SMTPServer
) -> None:
    catcher = settings.replace(smtp_host="")
    await make_list(catcher)
    async with serve_app(catcher) as app:
        await app.client.post(SUBSCRIBE, json={"email": "dev@example.com"})
        for _ in range(200):
            inbox = await app.client.get("/dev/mail")
            if "/dev/mail/1" in inbox.text:
                break
        assert "Development only" in inbox.text
        assert "Confirm your subscription to Frühstücks-Briefing" in inbox.text
        message = await app.client.get("/dev/mail/1")
        confirm = re.findall(r'<a href="(https://[^"]+/confirm/[^"]+)">', message.text)
        assert confirm, "the confirmation link is clickable"
        assert "frame-src 'self'" in message.headers["content-security-policy"]
        html = await app.client.get("/dev/mail/1/html")
        assert html.headers["content-security-policy"].startswith("sandbox")
        assert confirm[0] in html.text
        page = await app.client.get(app.local(confirm[0]))
        assert page.status_code == 200 and "Yes, subscribe me" in page.text
    assert smtp.received == [], "nothing left the machine"


async def test_mail_catcher_is_absent_when_smtp_is_configured(app: Running) -> None:
    assert (await app.client.get("/dev/mail")).status_code == 404
