"""A flood on one list: what it gets in against the work it must do, and what readers get.

The service runs as its own process (``python -m service serve``, SQLite, worker off,
behind a trusted-proxy setting), and the flood comes from this process over sockets
(``tests/flooding.py``): stampers fetch a fresh form stamp per signup and pay no work,
payers solve every proof of work they are asked for in a solver process each. Scripted
readers sign up once a second in between, each from an address of their own, as the box
does (send; if asked for a proof of work, solve it and send again).

Two runs of the same flood: the reference is the closed door (a hard cap per list, as the
old default of 600 a minute was, scaled to what one machine's flood gets in: ``--cap``, no
surge), then the defaults (the proof of work rises with the list's rate, 16 to 19 bits).
For each: the flood's accepted rate with and without work, the payers' hash rate, the
work asked per accepted signup, and the readers' answers.

    python bench/flood_bench.py [--seconds 25] [--stampers 60] [--payers 1] [--cap 100/1m]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx
from flooding import SOLVER, Flood

SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 - a scratch service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def server(folder: Path, extra: dict[str, str]) -> Iterator[str]:
    """`newsletter serve` on a new SQLite file, with a list ``daily``; its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'flood.db'}",
            "NEWSLETTER_SECRET_KEY": SECRET,
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",  # never reached: the worker is off
            "NEWSLETTER_RUN_WORKER": "false",
            "NEWSLETTER_LOG_LEVEL": "ERROR",
            "NEWSLETTER_TRUSTED_PROXIES": "127.0.0.1",
            "NEWSLETTER_PORT": str(port),
            "NEWSLETTER_HOST": "127.0.0.1",
            **extra,
        }
    )
    run = [sys.executable, "-m", "service"]
    subprocess.run([*run, "migrate"], env=env, check=True, capture_output=True)  # noqa: S603
    create = [*run, "lists", "create", "daily", "--name", "Daily"]
    subprocess.run(create, env=env, check=True, capture_output=True)  # noqa: S603
    proc = subprocess.Popen([*run, "serve"], env=env)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def readers(url: str, seconds: float, answers: list[tuple[int, int]]) -> None:
    """A reader every second, as the box does it; (status, bits paid) for each."""
    solver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SOLVER, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert solver.stdin is not None and solver.stdout is not None
    stdin, stdout, turn = solver.stdin, solver.stdout, asyncio.Lock()
    signup, challenge = "/api/v1/lists/daily/subscriptions", "/api/v1/lists/daily/challenge"

    async def reader(client: httpx.AsyncClient, n: int) -> None:
        headers = {"X-Forwarded-For": f"93.184.{n // 250}.{n % 250 + 1}"}
        shown = (await client.get(challenge, headers=headers)).json()
        await asyncio.sleep(2.5)  # the reader types
        fields = {"email": f"reader{n}@example.org", "form_stamp": shown["form_stamp"]}
        reply = await client.post(signup, data=fields, headers=headers)
        bits = 0
        if reply.status_code == 403:  # asked for a proof of work: solve, send again
            asked = (await client.get(challenge, headers=headers)).json()
            async with turn:
                stdin.write(f"{asked['challenge']} {asked['difficulty']}\n".encode())
                await stdin.drain()
                solution = (await stdout.readline()).decode().strip()
            fields.update(pow_challenge=asked["challenge"], pow_solution=solution)
            reply = await client.post(signup, data=fields, headers=headers)
            bits = int(asked["difficulty"])
        answers.append((reply.status_code, bits))

    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client, asyncio.TaskGroup() as tg:
            for n in range(int(seconds)):
                tg.create_task(reader(client, n))
                await asyncio.sleep(1.0)
    finally:
        solver.kill()
        await solver.wait()


async def one_run(url: str, args: argparse.Namespace) -> tuple[Flood, list[tuple[int, int]], float]:
    # Stampers wait out NEWSLETTER_MIN_FILL_TIME (2 s): their stamps are good ones.
    flood = Flood(url, "daily", stampers=args.stampers, payers=args.payers, fill_time=2.1)
    reading: list[tuple[int, int]] = []
    began = time.monotonic()
    flooding = asyncio.create_task(flood.run())
    try:
        await readers(url, args.seconds, reading)
    finally:
        flood.stop()
        await flooding
    return flood, reading, time.monotonic() - began


def report(name: str, flood: Flood, reading: list[tuple[int, int]], took: float) -> None:
    unpaid, paid = flood.accepted(paid=False), flood.accepted(paid=True)
    print(
        f"{name}: {len(flood.sent)} flood signups in {took:.0f} s ({len(flood.sent) / took:.0f}/s)"
    )
    print(f"  answers: {dict(sorted(flood.answers().items()))}")
    print(f"  accepted without work: {len(unpaid)} ({len(unpaid) / took:.1f}/s)")
    if flood.solved:
        rate = flood.hashes / took
        levels = Counter(s.difficulty for s in paid)
        asked = statistics.mean(2**s.difficulty for s in paid) if paid else 0.0
        print(
            f"  accepted with work: {len(paid)} ({len(paid) / took:.1f}/s) of {flood.solved} "
            f"solved, for {flood.hashes / 1e6:.1f} M hashes ({rate / 1e3:.0f}k/s); bits paid: "
            f"{dict(sorted(levels.items()))}"
        )
        if paid:
            print(
                f"  hashes per accepted signup: {flood.hashes / len(paid):.0f} (asked on average "
                f"{asked:.0f}); accepted/s over hashes/s / 2^bits asked: "
                f"{len(paid) / took / (rate / asked):.2f}"
            )
    statuses = Counter(status for status, _ in reading)
    paid_bits = [bits for _, bits in reading if bits]
    print(
        f"  readers: {dict(statuses)}; {len(paid_bits)} of {len(reading)} paid a proof of "
        f"work, bits {dict(sorted(Counter(paid_bits).items()))}"
    )


async def main(args: argparse.Namespace) -> None:
    runs = {
        f"closed door (NEWSLETTER_RATE_LIMIT_LIST={args.cap}, no surge)": {
            "NEWSLETTER_RATE_LIMIT_LIST": args.cap,
            "NEWSLETTER_POW_SURGE_LIST": "",
            "NEWSLETTER_POW_SURGE_CLIENT": "",
        },
        "rising cost (the defaults)": {},
    }
    for name, extra in runs.items():
        with tempfile.TemporaryDirectory() as folder, server(Path(folder), extra) as url:
            flood, reading, took = await one_run(url, args)
        report(name, flood, reading, took)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=25, help="how long each run floods")
    parser.add_argument("--stampers", type=int, default=60, help="bots that pay no work")
    parser.add_argument("--payers", type=int, default=1, help="bots that solve (one core each)")
    parser.add_argument(
        "--cap",
        default="100/1m",
        help="the reference's per-list cap (the old default, 600/1m, is more than a flood "
        "from one 2-core machine gets in)",
    )
    asyncio.run(main(parser.parse_args()))
