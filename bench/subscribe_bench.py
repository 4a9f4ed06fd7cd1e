"""Subscribe throughput and latency under load, as a ratio to a bare Starlette endpoint.

Runs, one after another on 127.0.0.1, each on the same uvicorn set-up as `newsletter serve`:

- ``bare/1``: a Starlette app whose only route parses the same JSON body and answers 202,
  no middleware, no database (the reference);
- ``sqlite/1``: `newsletter serve` on a SQLite file, one process;
- ``bare/2`` and ``postgresql/2``: the same with two server processes (PostgreSQL only
  when ``--postgres URL`` is given), the load spread over both.

Each subscribe uses a new address, so each one writes the subscriber, the subscription,
the consent record and the outbox row in one transaction, as in production. The mail
worker is off (``NEWSLETTER_RUN_WORKER=false``) so the numbers are the request path
alone; sending happens in a worker and never on that path.

For each target, a separate load-generator process (raw asyncio HTTP/1.1 keep-alive
client, far cheaper per request than the server) first measures peak throughput closed
loop (``--clients`` connections, each sending its next request when the last answered),
then sends an open-loop stream at half that rate for the latency percentiles (latency
from when each request was due, so a stalled server cannot hide its queueing).

Targets alternate for ``--rounds`` rounds (bare, service, bare, service, ...) and the
medians are reported: on a shared machine, a burst of load from elsewhere then falls on
both sides of a ratio, not on one.

    python bench/subscribe_bench.py [--seconds 5] [--rounds 3] [--clients 16] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.bots import FormStamps

PATH = "/api/v1/lists/bench/subscriptions"
SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 - a bench's own
RUNS = itertools.count()  # each load run gets its own span of stamp times (see Generator)
STARTED = time.time()
KEEP_ALIVE = 4.0  # seconds an idle connection is reused for (the server closes it at 5)
BARE_APP = """
import itertools
import json
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def subscribe(request):
    data = json.loads(await request.body())
    assert isinstance(data, dict) and "email" in data
    return JSONResponse({"status": "accepted", "message": "Thanks!"}, status_code=202)

app = Starlette(routes=[
    Route("/api/v1/lists/{slug}/subscriptions", subscribe, methods=["POST"]),
    Route("/healthz", lambda request: JSONResponse({"status": "ok"})),
])
"""


# The load generator (runs in its own process) -------------------------------------------


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post(self, body: bytes) -> int:
        self.writer.write(
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


class Generator:
    def __init__(self, ports: list[int], tag: str, slot: int = 0, base: float = 0.0) -> None:
        self.ports = ports
        self.tag = tag
        self.n = 0
        self.errors = 0
        # Each signup carries a form stamp of its own, shown a few seconds ago, as the box
        # sends it: the service checks and spends it (the bare endpoint parses the same body).
        # A stamp is its time to the millisecond: each run counts back through 40 s of its own
        # from the bench's start (the service keeps stamps good for longer here: see ENV).
        self.stamps = FormStamps(SECRET)
        self.shown = (base or time.time()) - 5 - 40 * slot

    def body(self) -> bytes:
        self.n += 1
        stamp = self.stamps.make("bench", self.shown - self.n / 1000)  # one per millisecond
        return json.dumps(
            {"email": f"{self.tag}-{self.n}@example.com", "form_stamp": stamp}
        ).encode()

    async def connect(self, i: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.ports[i % len(self.ports)])
        return Connection(reader, writer)

    async def closed_loop(self, clients: int, warmup: float, seconds: float) -> dict[str, Any]:
        conns = [await self.connect(i) for i in range(clients)]
        loop = asyncio.get_running_loop()
        start = loop.time() + warmup
        end = start + seconds
        latencies: list[float] = []

        async def client(conn: Connection) -> None:
            while (t0 := loop.time()) < end:
                status = await conn.post(self.body())
                if status != 202:
                    self.errors += 1
                if t0 >= start:
                    latencies.append(loop.time() - t0)

        await asyncio.gather(*(client(c) for c in conns))
        for c in conns:
            c.writer.close()
        return {"rps": len(latencies) / seconds, **percentiles(latencies)}

    async def open_loop(self, rate: float, warmup: float, seconds: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        # Idle connections with when each was last used: like any keep-alive client, one
        # idle for longer than the server keeps it open (uvicorn: 5 s) is not reused.
        idle: list[tuple[Connection, float]] = [
            (await self.connect(i), loop.time()) for i in range(8)
        ]
        opened = len(idle)
        latencies: list[float] = []
        pending: set[asyncio.Task[None]] = set()
        start = loop.time() + 0.05
        total = int(rate * (warmup + seconds))

        async def send(due: float, counted: bool) -> None:
            nonlocal opened
            conn = None
            while idle and conn is None:
                conn, used = idle.pop()
                if loop.time() - used > KEEP_ALIVE:
                    conn.writer.close()
                    conn = None
            if conn is None:
                opened += 1
                conn = await self.connect(opened)
            try:
                status = await conn.post(self.body())
            except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
                self.errors += 1  # the connection broke: counted, and not reused
                conn.writer.close()
                return
            if status != 202:
                self.errors += 1
            if counted:
                latencies.append(loop.time() - due)
            idle.append((conn, loop.time()))

        k = 0
        while k < total:
            now = loop.time()
            while k < total and start + k / rate <= now:
                due = start + k / rate
                task = asyncio.create_task(send(due, due >= start + warmup))
                pending.add(task)
                task.add_done_callback(pending.discard)
                k += 1
            await asyncio.sleep(max(0.0, min(start + k / rate - loop.time(), 0.002)))
        await asyncio.gather(*pending)
        return {"rps": rate, "connections": opened, **percentiles(latencies)}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p99_ms": at(0.99)}


def generate(args: argparse.Namespace) -> None:
    gen = Generator([int(p) for p in args.ports.split(",")], args.tag, args.slot, args.base)
    cpu0 = time.process_time()
    if args.rate:
        result = asyncio.run(gen.open_loop(args.rate, args.warmup, args.seconds))
    else:
        result = asyncio.run(gen.closed_loop(args.clients, args.warmup, args.seconds))
    result["errors"] = gen.errors
    result["generator_cpu"] = (time.process_time() - cpu0) / (args.warmup + args.seconds)
    print(json.dumps(result))


# The orchestration ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError("a server did not start") from None
            time.sleep(0.1)


def base_env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_SECRET_KEY": SECRET,
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",  # never reached: the worker is off
            "NEWSLETTER_SMTP_PORT": "2525",
            "NEWSLETTER_SMTP_TLS": "none",
            "NEWSLETTER_RUN_WORKER": "false",
            # Form stamps good for hours, so that every load run has stamps of its own.
            "NEWSLETTER_POW_LIFETIME": "3h",
            "NEWSLETTER_LOG_LEVEL": "WARNING",
            # Limits on, as in production (their counters are part of the request path),
            # but high enough that the one load generator is never refused.
            "NEWSLETTER_RATE_LIMIT_IP": "100000000/1m",
            "NEWSLETTER_RATE_LIMIT_LIST": "100000000/1m",
            # The surge's reads too, at rates the load never reaches (no proof of work).
            "NEWSLETTER_POW_SURGE_LIST": "100000000/1m",
            "NEWSLETTER_POW_SURGE_CLIENT": "100000000/1m",
        }
    )
    return env


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new database on the PostgreSQL server at ``server_url``, dropped afterwards."""
    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    name = f"nl_bench_{secrets.token_hex(4)}"
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def newsletter(args: list[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "service", *args], env=env, check=True)  # noqa: S603


def prepare_database(env: dict[str, str]) -> None:
    commands = subprocess.run(
        [sys.executable, "-m", "service", "--help"], env=env, capture_output=True, text=True
    ).stdout
    if " migrate" in commands:
        newsletter(["migrate"], env)
    newsletter(["lists", "create", "bench", "--name", "Bench"], env)


def start_servers(
    kind: str, env: dict[str, str], count: int, folder: Path
) -> tuple[list[int], list[subprocess.Popen[bytes]]]:
    ports, procs = [], []
    for i in range(count):
        port = free_port()
        if kind == "bare":
            command = [sys.executable, "-c", f"{BARE_APP}\n{SERVE_BARE.format(port=port)}"]
        else:
            command = [sys.executable, "-m", "service", "serve", "--port", str(port)]
        log = (folder / f"{kind}{i}.log").open("wb")
        procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))  # noqa: S603
        ports.append(port)
    for port in ports:
        wait_healthy(port, procs)
    return ports, procs


SERVE_BARE = """
import uvicorn
uvicorn.run(app, host="127.0.0.1", port={port}, log_config=None, access_log=False,
            server_header=False, proxy_headers=False)
"""


def run_generator(
    ports: list[int], tag: str, args: argparse.Namespace, rate: float = 0.0
) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--generate",
        "--ports", ",".join(map(str, ports)), "--tag", tag,
        "--clients", str(args.clients), "--seconds", str(args.seconds),
        "--warmup", str(args.warmup), "--rate", str(rate),
        "--slot", str(next(RUNS)), "--base", str(STARTED),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def measure(
    name: str,
    tag: str,
    kind: str,
    env: dict[str, str],
    count: int,
    args: argparse.Namespace,
    folder: Path,
) -> dict[str, Any]:
    ports, procs = start_servers(kind, env, count, folder)
    try:
        peak = run_generator(ports, f"{tag}-peak", args)
        half = run_generator(ports, f"{tag}-half", args, rate=peak["rps"] / 2)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    result = {"name": name, "peak": peak, "half": half}
    print(
        f"{tag:18} peak {peak['rps']:7.0f} req/s (p50 {peak['p50_ms']:5.1f} ms, p99 "
        f"{peak['p99_ms']:5.1f} ms, {peak['errors']} errors, generator cpu "
        f"{peak['generator_cpu']:.2f}) | at {half['rps']:6.0f} req/s: "
        f"p50 {half['p50_ms']:5.1f} ms, p99 {half['p99_ms']:5.1f} ms, {half['errors']} errors",
        flush=True,
    )
    return result


def orchestrate(args: argparse.Namespace) -> int:
    # Targets alternate, round after round, so that a burst of load from elsewhere on a
    # shared machine hits both sides of a ratio rather than one; the medians are reported.
    pairs: list[tuple[str, str]] = []  # (service, its bare reference)
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sqlite_env = base_env(f"sqlite:///{folder / 'bench.db'}")
        prepare_database(sqlite_env)
        groups = [(sqlite_env, [("bare/1", "bare", 1), ("sqlite/1", "service", 1)])]
        pairs.append(("sqlite/1", "bare/1"))
        with contextlib.ExitStack() as stack:
            if args.postgres:
                pg_env = base_env(stack.enter_context(scratch_database(args.postgres)))
                prepare_database(pg_env)
                groups.append((pg_env, [("bare/2", "bare", 2), ("postgresql/2", "service", 2)]))
                pairs.append(("postgresql/2", "bare/2"))
            for env, targets in groups:
                for round_ in range(1, args.rounds + 1):
                    for name, kind, count in targets:
                        tag = f"{name}-r{round_}"
                        runs.setdefault(name, []).append(
                            measure(name, tag, kind, env, count, args, folder)
                        )
    print()
    verdicts = {}
    for service, bare in pairs:
        pairs_run = zip(runs[service], runs[bare], strict=True)
        ratios = [s["peak"]["rps"] / b["peak"]["rps"] for s, b in pairs_run]
        p99s = [r["half"]["p99_ms"] for r in runs[service]]
        ratio, p99 = statistics.median(ratios), statistics.median(p99s)
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"{service}: {ratio:.2f} of {bare} throughput (median of {len(ratios)} rounds: "
            f"{shown}); p99 at half of peak {p99:.1f} ms (median; worst {max(p99s):.1f} ms)"
        )
        verdicts[service] = ratio >= 0.30 and p99 < 25
    verdict = "met" if verdicts["sqlite/1"] else "MISSED"
    print(f"SQLite target (>= 0.30 of bare, p99 < 25 ms at half of peak, medians): {verdict}")
    return 0 if verdicts["sqlite/1"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--rounds", type=int, default=3, help="times each target is measured")
    parser.add_argument(
        "--postgres",
        help="a PostgreSQL database URL to run the 2-process case on (it gets a list 'bench')",
    )
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--slot", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
