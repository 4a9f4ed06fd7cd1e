"""What the embed costs the page it sits on, measured in headless Chromium.

Serves the service and a sample article page (another origin) on 127.0.0.1, then loads
the article alternately without and with the snippet, and reports:

- widget.js size, raw and gzipped, against the 5.0 KB gzipped budget (aim: 4 KB): what a
  plain list's page loads; and each part a list may load besides (``/widget/NAME.js``);
- cumulative layout shift with the box shown (budget: 0);
- whether any request the embed makes is render-blocking (budget: none);
- first contentful paint and load time with the snippet, as a ratio to the same page
  without it, measured in the same run (medians of N alternating loads).

    python bench/widget_budget.py [--runs 15] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import Browser, async_playwright

from service.app import create_app
from service.db import Database
from service.demo import ArticleServer, render_article
from service.lists import create_list
from service.settings import Settings
from service.web.assets import PART_SOURCES, snippet, widget_asset, widget_part

BUDGET_GZIP = 5 * 1024
AIM_GZIP = 4 * 1024

OBSERVE = """
window.__cls = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
}).observe({type: "layout-shift", buffered: true});
window.__shown = new Promise((resolve) =>
  document.addEventListener("newsletter:shown", resolve, {once: true}));
"""


async def measure(browser: Browser, url: str, with_widget: bool) -> dict[str, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.add_init_script(OBSERVE)
    await page.goto(url, wait_until="load")
    if with_widget:
        await page.evaluate("window.__shown")
        await page.wait_for_timeout(500)  # the slide-in, and anything it might push around
    else:
        await page.wait_for_timeout(500)
    result: dict[str, Any] = await page.evaluate("""() => {
        const paint = performance.getEntriesByName("first-contentful-paint")[0];
        const nav = performance.getEntriesByType("navigation")[0];
        const embed = performance.getEntriesByType("resource")
          .filter((r) => r.name.includes("/widget"))
          .map((r) => ({name: r.name, blocking: r.renderBlockingStatus}));
        return {cls: window.__cls, fcp: paint ? paint.startTime : null,
                load: nav.loadEventEnd, embed};
    }""")
    await context.close()
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main(runs: int, chromium: str) -> int:
    asset = widget_asset()
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="widget-bench-"))
    settings = Settings.from_env(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
            "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
            "NEWSLETTER_SECRET_KEY": "bench-secret-key-long-enough-0123456789",
        }
    )
    base = settings.base_url
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no "started" event
        await asyncio.sleep(0.02)
    tag = snippet(base, "bench").replace(" async>", ' data-trigger="immediate" async>')
    with (
        ArticleServer(render_article(tag)) as with_page,
        ArticleServer(render_article("")) as without_page,
    ):
        db = Database.from_url(settings.database_url)
        await create_list(db, slug="bench", name="Bench", origins=[with_page.url])
        await db.dispose()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            samples: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
            await measure(browser, with_page.url + "/", True)  # warm-up, not counted
            for _ in range(runs):
                samples[False].append(await measure(browser, without_page.url + "/", False))
                samples[True].append(await measure(browser, with_page.url + "/", True))
            await browser.close()
    server.should_exit = True
    await serving

    def median(key: str, with_widget: bool) -> float:
        return statistics.median(s[key] for s in samples[with_widget])

    cls = max(s["cls"] for s in samples[True])
    blocking = sorted(
        {
            e["name"].split("?")[0]
            for s in samples[True]
            for e in s["embed"]
            if e["blocking"] != "non-blocking"
        }
    )
    fetched = sorted({e["name"].split("?")[0].replace(base, "") for e in samples[True][0]["embed"]})
    print(
        f"widget.js: {len(asset.body)} bytes, {len(asset.gzipped)} gzipped "
        f"({len(asset.gzipped) / BUDGET_GZIP:.2f} of the {BUDGET_GZIP}-byte budget)"
    )
    for name in PART_SOURCES:
        part = widget_part(name)
        assert part is not None
        print(
            f"  part {name}: {len(part.body)} bytes, {len(part.gzipped)} gzipped (only where used)"
        )
    print(
        f"layout shift with the box shown: {cls:.4f} (page without it: "
        f"{max(s['cls'] for s in samples[False]):.4f})"
    )
    print(
        f"requests made by the embed: {', '.join(fetched)}; render-blocking: "
        f"{', '.join(blocking) or 'none'}"
    )
    print(
        f"first contentful paint, with / without snippet: "
        f"{median('fcp', True) / median('fcp', False):.2f} "
        f"({median('fcp', True):.0f} ms / {median('fcp', False):.0f} ms, median of {runs})"
    )
    print(
        f"load event, with / without snippet: {median('load', True) / median('load', False):.2f} "
        f"({median('load', True):.0f} ms / {median('load', False):.0f} ms)"
    )
    ok = len(asset.gzipped) <= BUDGET_GZIP and cls == 0 and not blocking
    print("budget:", "met" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.runs, args.chromium)))
