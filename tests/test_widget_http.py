"""/widget.js and the box's settings, as caches, proxies and browsers see them."""

from __future__ import annotations

import asyncio
import gzip
import re

from support import SUBSCRIBE, Running, SMTPServer, make_list, serve_app

from service.auth.api_tokens import create_token
from service.auth.users import create_user
from service.settings import Settings
from service.web.assets import widget_asset


async def test_script_caching_compression_and_cors(app: Running) -> None:
    asset = widget_asset()
    plain = await app.client.get("/widget.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/javascript")
    assert plain.content == asset.body
    # Cached five minutes, then used while the browser checks it in the background.
    assert plain.headers["cache-control"] == "public, max-age=300, stale-while-revalidate=86400"
    assert plain.headers["access-control-allow-origin"] == "*"
    assert plain.headers["vary"] == "Accept-Encoding"
    etag = plain.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")

    zipped = await app.client.get("/widget.js", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) == len(asset.gzipped) <= 5 * 1024
    assert gzip.decompress(asset.gzipped) == asset.body
    assert zipped.headers["etag"] != etag, "each encoding has its own strong ETag"

    again = await app.client.get(
        "/widget.js", headers={"If-None-Match": etag, "Accept-Encoding": "identity"}
    )
    assert again.status_code == 304 and again.content == b""

    versioned = await app.client.get(f"/widget.js?v={asset.version}")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    stale = await app.client.get("/widget.js?v=0000")
    assert stale.headers["cache-control"].startswith("public, max-age=300,")
    assert stale.status_code == 200 and stale.content == asset.body  # an old snippet works


async def test_config_says_whether_the_calling_origin_may_sign_people_up(app: Running) -> None:
    allowed = await app.client.get(
        "/api/v1/lists/daily/widget", headers={"Origin": "https://www.example.com"}
    )
    assert allowed.status_code == 200
    body = allowed.json()
    assert body["origin_allowed"] is True
    assert body["endpoint"] == f"{app.settings.base_url}{SUBSCRIBE}"
    assert body["settings"]["title"] == "Get our newsletter"
    assert "Frühstücks-Briefing" in body["settings"]["consent"]
    assert body["texts"]["email_label"] == "Email address"
    assert allowed.headers["vary"] == "Origin, Accept-Encoding"

    foreign = await app.client.get(
        "/api/v1/lists/daily/widget", headers={"Origin": "https://evil.example.net"}
    )
    assert foreign.json()["origin_allowed"] is False

    french = await app.client.get("/api/v1/lists/daily/widget?lang=fr")
    assert french.json()["settings"]["button"] == "S'abonner"
    assert french.json()["texts"]["close"] == "Fermer"
    bogus = await app.client.get("/api/v1/lists/daily/widget?lang=xx")
    assert bogus.json()["language"] == "en"

    missing = await app.client.get("/api/v1/lists/nope/widget")
    assert missing.status_code == 404 and "nope" in missing.json()["message"]


async def test_the_consent_wording_follows_the_language_the_page_asks_for(app: Running) -> None:
    from service.lists import update_list

    german = (await app.client.get("/api/v1/lists/daily/widget?lang=de")).json()
    assert german["settings"]["consent"].startswith("Mit dem Abonnieren willigen Sie ein")
    assert "Frühstücks-Briefing" in german["settings"]["consent"]
    assert german["texts"]["result_ok_title"] == "Fast geschafft"
    assert "{time}" in german["texts"]["too_many_until"]
    # A list's own wording is shown as written, whatever the page's language.
    await update_list(app.db, "daily", {"consent_text": "Ja, schickt mir Post."})
    own = (await app.client.get("/api/v1/lists/daily/widget?lang=fr")).json()
    assert own["settings"]["consent"] == "Ja, schickt mir Post."


async def test_a_page_on_an_allowed_site_may_read_retry_after(app: Running) -> None:
    reply = await app.client.post(
        SUBSCRIBE, data={"email": "r@example.com"}, headers={"Origin": "https://www.example.com"}
    )
    assert reply.headers["access-control-expose-headers"] == "Retry-After"


async def test_hosted_page_and_consent_checkbox(app: Running, smtp: SMTPServer) -> None:
    page = await app.client.get("/subscribe/daily")
    assert page.status_code == 200
    assert 'action="/subscribe/daily"' in page.text
    assert page.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert (
        await app.client.get("/subscribe/nope", headers={"Accept": "text/html"})
    ).status_code == 404

    from service.lists import update_list

    await update_list(app.db, "daily", {"consentCheckbox": "true"})
    refused = await app.client.post(SUBSCRIBE, json={"email": "c@example.com"})
    assert refused.status_code == 422 and "consent" in refused.json()["fields"]
    accepted = await app.client.post(SUBSCRIBE, json={"email": "c@example.com", "consent": "yes"})
    assert accepted.status_code == 202
    await smtp.wait_for(1)


async def test_honeypot_gets_the_same_answer_and_nothing_happens(
    app: Running, smtp: SMTPServer
) -> None:
    from support import snapshot

    human = await app.client.post(SUBSCRIBE, data={"email": "h@example.com", "url": ""})
    await smtp.wait_for(1)
    before = await snapshot(app.db)
    bot = await app.client.post(
        SUBSCRIBE, data={"email": "b@example.com", "url": "http://spam.example"}
    )
    assert (bot.status_code, bot.content) == (human.status_code, human.content)
    # Taken in like any signup (same work, same answer), then dropped by the worker.
    for _ in range(100):
        if await snapshot(app.db) == before:
            break
        await asyncio.sleep(0.05)
    assert await snapshot(app.db) == before
    await asyncio.sleep(0.2)
    assert len(smtp.received) == 1


async def test_openapi_document_covers_every_api_route(app: Running) -> None:
    from starlette.routing import Route

    from service.app import create_app

    response = await app.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": app.settings.base_url}]
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (re.sub(r":\w+}", "}", route.path), method)  # {id:person} is {id} in the document
        for route in create_app(app.settings).routes
        if isinstance(route, Route)
        and route.path.startswith("/api/v1/")
        and route.path != "/api/v1/openapi.json"
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served <= documented, served - documented


async def test_settings_are_gzipped_and_revalidated_until_the_list_changes(
    app: Running,
) -> None:
    path, page = "/api/v1/lists/daily/widget", {"Origin": "https://www.example.com"}
    zipped = await app.client.get(path, headers={**page, "Accept-Encoding": "gzip"})
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(zipped.content)  # httpx unzipped it
    assert zipped.json()["origin_allowed"] is True
    assert zipped.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    assert zipped.headers["access-control-allow-origin"] == "*"
    etag = zipped.headers["etag"]
    assert etag.startswith('"') and etag.endswith('-gz"')

    plain = await app.client.get(path, headers={**page, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == zipped.content and plain.headers["etag"] != etag

    # The browser has it: 304, no body, the same caching headers.
    again = await app.client.get(
        path, headers={**page, "Accept-Encoding": "gzip", "If-None-Match": etag}
    )
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag and again.headers["cache-control"].startswith("public")
    # Another site, another answer (it may not sign people up), another tag.
    foreign = await app.client.get(
        path,
        headers={"Origin": "https://evil.example.net", "If-None-Match": etag},
    )
    assert foreign.status_code == 200 and foreign.json()["origin_allowed"] is False

    # A change through the admin API: the next page view gets the new settings.
    await create_user(app.db, "alice", "correct horse battery staple")
    token = await create_token(app.db, "alice", "tests")
    changed = await app.client.patch(
        "/api/v1/admin/lists/daily",
        json={"title": "Ünsere Pöst"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert changed.status_code == 200, changed.text
    fresh = await app.client.get(
        path, headers={**page, "Accept-Encoding": "gzip", "If-None-Match": etag}
    )
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag
    assert fresh.json()["settings"]["title"] == "Ünsere Pöst"


async def test_the_same_settings_have_the_same_etag_in_every_process(
    settings: Settings, smtp: SMTPServer
) -> None:
    await make_list(settings)
    tags = []
    for _ in range(2):  # two servers in turn, as two processes behind a balancer
        async with serve_app(settings) as app:
            reply = await app.client.get("/api/v1/lists/daily/widget?lang=de")
            tags.append(reply.headers["etag"])
    assert tags[0] == tags[1]


async def test_bad_conditional_headers_are_ignored(app: Running) -> None:
    path = "/api/v1/lists/daily/widget"
    for value in ("", "*garbage*", 'W/"x", "y"', "\u00e9t\u00e9", ",,,"):
        reply = await app.client.get(
            path, headers={"If-None-Match": value.encode(), "Accept-Encoding": "gzip;q=0"}
        )
        assert reply.status_code == 200, value
        assert "content-encoding" not in reply.headers
    star = await app.client.get(path, headers={"If-None-Match": "*"})
    assert star.status_code == 304
