"""Readers get through a flood: the box in real Chromium while bots flood its list.

The server runs on a real socket behind a trusted proxy setting; the flood comes from
outside (httpx clients and a solver process, ``tests/flooding.py``), each signup from
another address; 50 readers sign up through the real box in Chromium meanwhile, each from
an address of their own. How the flood's accepted rate follows the work it does, at the
default levels, is measured by ``python bench/flood_bench.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from flooding import Flood
from playwright.async_api import Browser, Route
from support import SMTPServer, make_list, serve_app, signups_acted_on

from service.demo import ArticleServer, render_article
from service.limits import canonical_address
from service.settings import Rate, Settings

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.xdist_group("browser")]

READERS = 50
AT_ONCE = 10  # readers on the page at the same time
SURGE = Rate(20, 60)


async def sign_up(browser: Browser, service: str, url: str, n: int) -> str:
    """One reader through the box, from an address of their own: what the box said."""
    context = await browser.new_context()

    async def from_home(route: Route) -> None:  # as the proxy in front of the service adds it
        await route.continue_(headers={**route.request.headers, "x-forwarded-for": f"93.184.{n}.1"})

    await context.route(f"{service}/**", from_home)
    try:
        page = await context.new_page()
        page.set_default_timeout(90_000)  # a busy machine; the flood itself is bounded
        await page.goto(url)
        box = page.locator("div[data-newsletter] .box")
        await box.locator("input[type=email]").fill(f"reader{n}@example.org")
        await box.locator("button.go").click()
        status = box.locator(".msg.ok, .msg.err")
        await status.wait_for()
        return ("ok: " if "ok" in (await status.get_attribute("class") or "") else "error: ") + (
            await status.inner_text()
        )
    except Exception as exc:  # a reader who never sees an answer is counted, not raised
        return f"no answer: {exc!r}"[:200]
    finally:
        await context.close()


@pytest.mark.scenario
async def test_readers_get_through_a_flood_that_pays_for_every_signup(
    settings: Settings, smtp: SMTPServer, browser: Browser
) -> None:
    defaults = Settings.from_env({})
    flooded = settings.replace(
        trusted_proxies=("127.0.0.1/32",),
        rate_limit_ip=defaults.rate_limit_ip,
        rate_limit_address=defaults.rate_limit_address,
        # The service-wide cap would hold back mail once a fast machine's paying flood had
        # filled it (tests/test_abuse.py checks that it keeps signups waiting): not here.
        rate_limit_confirmations=(Rate(10_000, 3600),),
        min_fill_time=0.5,
        # Levels cheap enough for a test (and to keep the payer's signups, which the server
        # must take in, few); bench/flood_bench.py runs the defaults (16 to 19 bits).
        pow_difficulty=13,
        pow_difficulty_max=17,
        pow_surge_list=SURGE,
        pow_surge_client=defaults.pow_surge_client,
        list_cache_ttl=0.5,
    )
    async with serve_app(flooded, reachable=True) as app:
        attributes = 'data-list="daily" data-trigger="immediate" async'
        snippet = f'<script src="{app.url}/widget.js" {attributes}></script>'
        with ArticleServer(render_article(snippet)) as article:
            await make_list(flooded, origins=[article.url])
            flood = Flood(app.url, "daily", stampers=5, payers=1, fill_time=0.5)
            flooding = asyncio.create_task(flood.run())
            try:
                # Readers come once the list is under pressure.
                for _ in range(200):
                    if any(s.error == "proof_of_work" for s in flood.sent):
                        break
                    await asyncio.sleep(0.05)
                began = len(flood.sent)
                turns = asyncio.Semaphore(AT_ONCE)

                async def reader(n: int) -> str:
                    async with turns:
                        return await sign_up(browser, app.url, article.url, n)

                said = await asyncio.gather(*(reader(n) for n in range(READERS)))
            finally:
                flood.stop()
                await flooding
        await signups_acted_on(app.db)
        await asyncio.sleep(0.5)  # the worker sends what it queued

    delivered = Counter(m.rcpt_tos[0] for m in smtp.received)
    readers = [f"reader{n}@example.org" for n in range(READERS)]
    got_mail = [r for r in readers if delivered[r] == 1]
    unpaid, paid = flood.accepted(paid=False), flood.accepted(paid=True)
    print(
        f"\nflood: {len(flood.sent)} signups {dict(flood.answers())}, {len(flood.sent) - began} "
        f"while readers came; accepted {len(unpaid)} unpaid, {len(paid)} paid for "
        f"{flood.hashes} hashes; readers: {Counter(s.split(':')[0] for s in said)}"
    )
    assert len(got_mail) >= 48, [s for s in said if not s.startswith("ok")]
    assert sum(n for r, n in delivered.items() if r in readers) == len(got_mail)  # once each
    victim = [a for a in delivered if canonical_address(a) == "victim@gmail.com"]
    assert sum(delivered[a] for a in victim) <= 1
    # The door never closed: the flood was asked to pay (403), or refused past what one
    # address does (429), never the list shut.
    assert {status for status, _ in flood.answers()} <= {202, 403, 429}
    assert not any("to this list" in s for s in said)
    # Without work the flood got no more in than the list takes while calm: what the surge
    # rate allows, across a window's turn, plus what came while the last calm reading was
    # kept (half a second).
    assert len(unpaid) <= 3 * SURGE.hits, len(unpaid)
    # With work, it got in what it paid for: every accepted signup carried a solution, the
    # price rose with the rate, and the hashes computed cover what was asked.
    assert len(paid) <= flood.solved
    assert max(s.difficulty for s in paid) > flooded.pow_difficulty
    asked = sum(2**s.difficulty for s in paid)
    assert flood.hashes >= asked / 4, (flood.hashes, asked)
