"""The box's event endpoint against a bare Starlette endpoint, side by side in one run.

Runs on 127.0.0.1, one server process each, on the same uvicorn set-up as
`newsletter serve`:

- ``bare``: a Starlette app whose only route reads the same urlencoded body, checks its
  fields and answers 204, no middleware, no database (the reference);
- ``events``: `newsletter serve` on a SQLite file, ``POST /api/v1/lists/bench/events``
  as the box sends it (its Origin, a beacon's body), counted in memory and written in
  batches as in production.

Each round, two load-generator processes (raw asyncio HTTP/1.1 keep-alive clients,
closed loop with ``--clients`` connections each) run at the same time, one against each
server: both servers share the machine's cores for the same seconds. On a shared machine
the wall-clock rates swing with everyone else's load, so each server's CPU time in the
round is read too (/proc/PID/stat, Linux): requests per CPU-second is what one process
with a core of its own would answer per second. The median of the rounds' ratios (events
/ bare) is the result: the promise is at least 0.8.

    python bench/events_bench.py [--seconds 4] [--rounds 3] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from subscribe_bench import SERVE_BARE, base_env, free_port, newsletter, wait_healthy

PATH = "/api/v1/lists/bench/events"
ORIGIN = "https://www.example.com"
PAGES = [f"/articles/{n}" for n in range(50)]
BARE_APP = """
from urllib.parse import parse_qsl
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

async def event(request):
    fields = dict(parse_qsl((await request.body()).decode(), max_num_fields=8))
    assert fields["e"] in {"shown", "dismissed", "submitted"} and fields["p"].startswith("/")
    return Response(status_code=204)

app = Starlette(routes=[
    Route("/api/v1/lists/{slug}/events", event, methods=["POST"]),
    Route("/healthz", lambda request: JSONResponse({"status": "ok"})),
])
"""
RATIO = 0.8


async def load(port: int, clients: int, warmup: float, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    end = start + seconds
    done = errors = warm = 0

    async def client(i: int) -> None:
        nonlocal done, errors, warm
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = i
        while (t0 := loop.time()) < end:
            n += clients
            body = f"e=shown&p={PAGES[n % len(PAGES)]}&v=&d={'phone' if n % 3 else 'larger'}"
            writer.write(
                f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {ORIGIN}\r\n"
                "Content-Type: text/plain;charset=UTF-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
            )
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if status != 204:
                errors += 1
            elif t0 >= start:
                done += 1
            else:
                warm += 1
        writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return {"rps": done / seconds, "requests": done + warm, "errors": errors}


def serve(kind: str, env: dict[str, str], folder: Path) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    if kind == "bare":
        command = [sys.executable, "-c", f"{BARE_APP}\n{SERVE_BARE.format(port=port)}"]
    else:
        command = [sys.executable, "-m", "service", "serve", "--port", str(port)]
    log = (folder / f"{kind}.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    wait_healthy(port, [proc])
    return port, proc


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(ports: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Load every port at once, one generator process each."""
    procs = [
        subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                __file__,
                "--generate",
                "--port",
                str(port),
                "--clients",
                str(args.clients),
                "--seconds",
                str(args.seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    return [json.loads(proc.communicate()[0]) for proc in procs]


def main(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="events-bench-"))
    env = base_env(f"sqlite:///{folder / 'bench.db'}")
    newsletter(["migrate"], env)
    newsletter(["lists", "create", "bench", "--name", "Bench", "--origin", ORIGIN], env)
    results: dict[str, list[float]] = {"bare": [], "events": []}
    per_cpu: dict[str, list[float]] = {"bare": [], "events": []}
    servers = {kind: serve(kind, env, folder) for kind in results}
    try:
        for _ in range(args.rounds):
            before = {kind: cpu_seconds(proc.pid) for kind, (_, proc) in servers.items()}
            got = measure([port for port, _ in servers.values()], args)
            for kind, result in zip(servers, got, strict=True):
                if result["errors"]:
                    print(f"{kind}: {result['errors']} answers were not 204", file=sys.stderr)
                used = cpu_seconds(servers[kind][1].pid) - before[kind]
                results[kind].append(result["rps"])
                per_cpu[kind].append(result["requests"] / max(used, 1e-3))
            time.sleep(0.2)
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.wait(10)
    ratios = [e / b for b, e in zip(per_cpu["bare"], per_cpu["events"], strict=True)]
    print("rounds, requests/s:", {k: [round(v) for v in vs] for k, vs in results.items()})
    print(
        "rounds, requests per CPU-second:", {k: [round(v) for v in vs] for k, vs in per_cpu.items()}
    )
    for kind, label in (("bare", "bare Starlette endpoint"), ("events", "event endpoint")):
        print(
            f"{label + ':':25} {statistics.median(per_cpu[kind]):,.0f} requests per CPU-second "
            f"({statistics.median(results[kind]):,.0f} requests/s on the shared machine)"
        )
    ratio = statistics.median(ratios)
    print(f"ratio, median of {args.rounds} rounds: {ratio:.2f} (promise: at least {RATIO})")
    return 0 if ratio >= RATIO else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(asyncio.run(load(args.port, args.clients, 0.5, args.seconds))))
        sys.exit(0)
    sys.exit(main(args))
