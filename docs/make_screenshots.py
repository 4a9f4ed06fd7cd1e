"""Make the screenshots in docs/ from the real demo, so they show what a newcomer gets.

Runs ``newsletter demo`` on free ports, opens its article page in headless Chromium on a
desktop and on a phone, waits for the box, types a name and an address as a reader
would, and saves ``docs/widget-desktop.png`` and ``docs/widget-phone.png``.

    python docs/make_screenshots.py [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.async_api import async_playwright

DOCS = Path(__file__).resolve().parent
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local URL
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def shoot(chromium: str, article: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=ARGS)
        shots = {
            "widget-desktop.png": {"viewport": {"width": 1280, "height": 800}},
            "widget-phone.png": {
                "viewport": {"width": 390, "height": 844},
                "device_scale_factor": 2,
                "is_mobile": True,
                "has_touch": True,
            },
        }
        for name, options in shots.items():
            context = await browser.new_context(**options)  # type: ignore[arg-type]
            page = await context.new_page()
            await page.goto(article + "/")
            box = page.get_by_role("dialog")
            await box.wait_for(timeout=15_000)
            await page.get_by_label("First name").fill("Ada")
            await page.get_by_label("Email address").fill("ada@example.org")
            await page.wait_for_timeout(600)  # the slide-in has finished
            await page.screenshot(path=str(DOCS / name))
            print(f"wrote {DOCS / name}")
            await context.close()
        await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    port, article_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    demo = subprocess.Popen(  # noqa: S603 - our own command
        [
            *(sys.executable, "-m", "service", "demo"),
            *("--port", str(port), "--article-port", str(article_port)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", time.monotonic() + 30)
        asyncio.run(shoot(args.chromium, f"http://127.0.0.1:{article_port}"))
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
