"""What a durable 202 costs on SQLite in disk syncs: FULL against NORMAL.

Starts `newsletter serve` (worker off) on a fresh SQLite file, once with the default
``synchronous=FULL`` and once with ``?synchronous=normal`` in the database URL, rounds
alternating. In each run ``strace -c`` is attached to every thread of the server once it is
up, ``--signups`` signups are sent from ``--clients`` concurrent connections, and the
``fsync`` and ``fdatasync`` calls made while they were taken in are counted. Needs strace
(and ptrace permission). The time it costs is measured by ``subscribe_bench.py
--sqlite-normal`` (strace slows every call down, so it is not timed here).

    python bench/durability_bench.py [--signups 300] [--clients 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

PATH = "/api/v1/lists/bench/subscriptions"
SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 - a bench's own


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_SECRET_KEY": SECRET,
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",  # never reached: the worker is off
            "NEWSLETTER_SMTP_PORT": "2525",
            "NEWSLETTER_SMTP_TLS": "none",
            "NEWSLETTER_RUN_WORKER": "false",
            "NEWSLETTER_LOG_LEVEL": "WARNING",
            "NEWSLETTER_MIN_FILL_TIME": "0",
            "NEWSLETTER_RATE_LIMIT_IP": "",
            "NEWSLETTER_RATE_LIMIT_LIST": "",
        }
    )
    return env


def newsletter(args: list[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "service", *args], env=env, check=True)  # noqa: S603


def wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.1)


async def send(port: int, tag: str, signups: int, clients: int) -> int:
    addresses = iter(range(signups))
    accepted = 0

    async def client() -> None:
        nonlocal accepted
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for i in addresses:
                answer = await http.post(PATH, json={"email": f"{tag}-{i}@example.com"})
                accepted += answer.status_code == 202

    await asyncio.gather(*(client() for _ in range(clients)))
    return accepted


def syncs(summary: str) -> int:
    """The fsync + fdatasync calls in ``strace -c``'s table."""
    total = 0
    for line in summary.splitlines():
        parts = line.split()
        if parts and parts[-1] in {"fsync", "fdatasync"}:
            total += int(parts[3])
    return total


def run(mode: str, folder: Path, tag: str, args: argparse.Namespace) -> dict[str, float]:
    query = "" if mode == "full" else "?synchronous=normal"
    env = env_for(f"sqlite:///{folder / tag}.db{query}")
    newsletter(["migrate"], env)
    newsletter(["lists", "create", "bench", "--name", "Bench"], env)
    port = free_port()
    log = (folder / f"{tag}.log").open("wb")
    command = [sys.executable, "-m", "service", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        wait_healthy(port, server)
        threads = [f"-p{tid}" for tid in os.listdir(f"/proc/{server.pid}/task")]
        out = folder / f"{tag}.strace"
        tracer = subprocess.Popen(  # noqa: S603
            ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out), *threads],  # noqa: S607
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # attached
        traced = asyncio.run(send(port, tag, args.signups, args.clients))
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)
    calls = syncs(out.read_text())
    print(
        f"{tag:10} {traced:5d} signups answered 202, {calls:4d} fsync/fdatasync calls",
        flush=True,
    )
    return {"syncs": calls, "accepted": traced}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=300)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"normal": [], "full": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            for mode in ("normal", "full"):
                results[mode].append(run(mode, Path(tmp), f"{mode}-r{round_}", args))
    print()
    for mode, runs in results.items():
        syncs_ = statistics.median(r["syncs"] for r in runs)
        print(f"{mode:7}: {syncs_:.0f} syncs per {args.signups} signups (median)")
    ratios = [
        f["rate"] / n["rate"] for f, n in zip(results["full"], results["normal"], strict=True)
    ]
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"full/normal signups per second: {statistics.median(ratios):.2f} (rounds: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
