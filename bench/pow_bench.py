"""How long the subscribe box's proof of work takes, in headless Chromium.

Runs the widget's own solver (service/static/pow.js) on challenges shaped like the
service's, for each difficulty, on the desktop CPU and with Chromium's CPU throttling
(``Emulation.setCPUThrottlingRate``: 4x and 6x stand for mid-range and low-end phones).
The number of tries a solution takes is random (geometric, mean 2^difficulty), so it
reports the median, the 90th percentile and the slowest of N challenges, and the hash
rate, from which any other difficulty's times follow.

    python bench/pow_bench.py [--runs 30] [--difficulties 14,16,18] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from playwright.async_api import async_playwright

from service.challenges import Challenges
from service.web.assets import pow_solver

RATES = (1, 4, 6)


async def main(runs: int, difficulties: list[int], chromium: str) -> int:
    solver = pow_solver()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        page = await browser.new_page()
        await page.goto("about:blank")
        await page.evaluate(f"() => {{ {solver}; window.powSolve = powSolve; }}")
        cdp = await page.context.new_cdp_session(page)
        print(f"{runs} challenges each; times in ms: median / 90th percentile / slowest")
        for rate in RATES:
            await cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
            for difficulty in difficulties:
                maker = Challenges("bench-secret-key-long-enough-0123456789", difficulty, 600)
                times, tries = [], 0
                for _ in range(runs):
                    challenge = maker.make("daily", now=time.time()).text
                    took, n = await page.evaluate(
                        """async ([c, d]) => {
                            const t = performance.now();
                            const n = await window.powSolve(c, d);
                            return [performance.now() - t, Number(n) + 1];
                        }""",
                        [challenge, difficulty],
                    )
                    times.append(took)
                    tries += n
                times.sort()
                p90 = times[int(0.9 * (len(times) - 1))]
                rate_k = tries / sum(times)
                print(
                    f"CPU {rate}x, {difficulty} bits: {statistics.median(times):6.0f} / "
                    f"{p90:6.0f} / {times[-1]:6.0f}   ({rate_k:.0f}k hashes/s)"
                )
        await browser.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--difficulties", default="14,16,18")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    sys.exit(
        asyncio.run(main(args.runs, [int(d) for d in args.difficulties.split(",")], args.chromium))
    )
