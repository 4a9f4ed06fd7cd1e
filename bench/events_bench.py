"""The box's event endpoint against a bare Starlette endpoint, side by side in one run.

Runs on 127.0.0.1, one server process each, on the same uvicorn set-up as
`newsletter serve`:

- ``bare``: a Starlette app whose only route reads the same urlencoded body, checks its
  fields and answers 204, no middleware, no database (the reference);
- ``events``: `newsletter serve` on a SQLite file, ``POST /api/v1/lists/bench/events``
  as the box sends it (its Origin, a beacon's body), counted in memory and written in
  batches as in production.

A separate load-generator process (raw asyncio HTTP/1.1 keep-alive client) measures
throughput closed loop with ``--clients`` connections. Targets alternate for
``--rounds`` rounds and the medians are compared: the promise is a ratio of at least 0.8.

    python bench/events_bench.py [--seconds 4] [--rounds 3] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    done = errors = 0

    async def client(i: int) -> None:
        nonlocal done, errors
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
        writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return {"rps": done / seconds, "errors": errors}


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


def measure(port: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--generate", "--port", str(port),
        "--clients", str(args.clients), "--seconds", str(args.seconds),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    result: dict[str, Any] = json.loads(out)
    return result


def main(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="events-bench-"))
    env = base_env(f"sqlite:///{folder / 'bench.db'}")
    newsletter(["migrate"], env)
    newsletter(["lists", "create", "bench", "--name", "Bench", "--origin", ORIGIN], env)
    results: dict[str, list[float]] = {"bare": [], "events": []}
    servers = {kind: serve(kind, env, folder) for kind in results}
    try:
        for _ in range(args.rounds):
            for kind, (port, _) in servers.items():
                got = measure(port, args)
                if got["errors"]:
                    print(f"{kind}: {got['errors']} answers were not 204", file=sys.stderr)
                results[kind].append(got["rps"])
                time.sleep(0.2)
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.wait(10)
    bare, events = (statistics.median(results[k]) for k in ("bare", "events"))
    print("rounds:", {k: [round(v) for v in vs] for k, vs in results.items()})
    print(f"bare Starlette endpoint: {bare:,.0f} requests/s (median of {args.rounds})")
    print(f"event endpoint:          {events:,.0f} requests/s (median of {args.rounds})")
    ratio = events / bare
    print(f"ratio: {ratio:.2f} (promise: at least {RATIO})")
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
