"""What every page view costs: the box's settings and ``/widget.js``, against a bare endpoint.

Runs on 127.0.0.1, on the same uvicorn set-up as ``newsletter serve``:

- ``service``: ``newsletter serve`` on a SQLite file with one list, at the default log
  level (so the access log is written, to a file, as in production);
- ``bare``: one Starlette file whose routes answer the same paths with the same bytes
  (fetched from the service first: the gzipped settings and script, with the same
  ``Content-Type``, ``Content-Encoding`` and ``Cache-Control``), no middleware, no
  logging (the reference).

Each request is what a reader's browser sends on a page view: ``Origin`` and
``Accept-Encoding: gzip`` (and, for the ``304`` rows, ``If-None-Match`` with the ETag it
was given, which the bare endpoint ignores, answering the whole body). A separate
load-generator process (an asyncio protocol, far cheaper per request than the server)
keeps ``--clients`` keep-alive connections busy for ``--seconds`` and counts answers.

Targets alternate, round after round, and the medians of the ratios are reported, so a
burst of load from elsewhere on a shared machine falls on both sides of a ratio.

``--stack`` picks the server's event loop and HTTP parser: ``installed`` (uvloop and
httptools when ``pip install '.[fast]'`` put them there, as ``newsletter serve`` does),
``plain`` (asyncio and h11 even if they are installed) or ``both`` (each, side by side,
to measure what the extra buys).

    python bench/pageview_bench.py [--seconds 3] [--rounds 3] [--clients 16] [--stack both]
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
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from subscribe_bench import free_port, wait_healthy

SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 - a bench's own
ORIGIN = "https://www.example.com"
SETTINGS_PATH = "/api/v1/lists/bench/widget"
WIDGET_PATH = "/widget.js"

# Makes `import uvloop` and `import httptools` fail, so uvicorn's "auto" falls back to
# asyncio and h11: the server as it runs without the [fast] extra.
PLAIN_STACK = "import sys; sys.modules['uvloop'] = None; sys.modules['httptools'] = None\n"
SERVE = "import sys\nfrom service.cli import main\nsys.exit(main(sys.argv[1:]))\n"
BARE_APP = """
import json, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

answers = json.load(open(sys.argv[1]))

def endpoint(answer):
    body = bytes.fromhex(answer["body"])
    async def serve(request):
        return Response(body, headers=answer["headers"])
    return serve

app = Starlette(routes=[
    *(Route(path, endpoint(answer)) for path, answer in answers.items()),
    Route("/healthz", lambda request: JSONResponse({"status": "ok"})),
])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_config=None,
            access_log=False, server_header=False, proxy_headers=False)
"""
# What the service's stack adds to every answer (its middleware) or the server adds (the
# date, the length): the bare endpoint answers with everything else, as the endpoint sent it.
STACK_HEADERS = (
    "x-content-type-options", "strict-transport-security", "x-request-id",
    "date", "server", "content-length", "connection",
)  # fmt: skip


# The load generator (runs in its own process) -------------------------------------------


class Client(asyncio.Protocol):
    """One keep-alive connection sending the same GET again as soon as it is answered."""

    def __init__(self, request: bytes, counts: dict[int, int], done: asyncio.Future[None]):
        self.request = request
        self.counts = counts
        self.done = done
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.stopping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            at = head.lower().find(b"content-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            status = int(head[9:12])
            self.counts[status] = self.counts.get(status, 0) + 1
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            if self.stopping:
                self.transport.close()
                return
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(
    port: int, pid: int, request: bytes, clients: int, warmup: float, seconds: float
) -> Any:
    loop = asyncio.get_running_loop()
    warm: dict[int, int] = {}
    counts: dict[int, int] = {}
    protocols: list[Client] = []
    for _ in range(clients):
        client = Client(request, warm, loop.create_future())
        await loop.create_connection(lambda c=client: c, "127.0.0.1", port)  # type: ignore[misc]
        protocols.append(client)
    await asyncio.sleep(warmup)
    for client in protocols:
        client.counts = counts
    cpu0, server0 = time.process_time(), cpu_seconds(pid)
    await asyncio.sleep(seconds)
    snapshot = dict(counts)
    server = cpu_seconds(pid) - server0
    cpu = (time.process_time() - cpu0) / seconds
    for client in protocols:
        client.stopping = True
    await asyncio.wait([c.done for c in protocols], timeout=5)
    total = sum(snapshot.values())
    return {
        "rps": total / seconds,
        "statuses": snapshot,
        "generator_cpu": cpu,
        "server_cpu": server / seconds,
        "cpu_us": server / max(total, 1) * 1e6,  # the server's CPU per answer
    }


def generate(args: argparse.Namespace) -> None:
    headers = json.loads(args.headers)
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    ).encode()
    result = load(args.port, args.pid, request, args.clients, args.warmup, args.seconds)
    print(json.dumps(asyncio.run(result)))


# The orchestration ------------------------------------------------------------------------


def env_for(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
            "NEWSLETTER_SECRET_KEY": SECRET,
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",  # never reached: nobody signs up
            "NEWSLETTER_SMTP_PORT": "2525",
            "NEWSLETTER_SMTP_TLS": "none",
            "NEWSLETTER_RUN_WORKER": "false",
            "NEWSLETTER_BASE_URL": "https://news.example.com",
        }
    )
    return env


def start(command: list[str], port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    wait_healthy(port, [proc])
    return proc


def fetch(port: int, path: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as reply:  # noqa: S310
        return reply.read(), {k.lower(): v for k, v in reply.headers.items()}


def run_generator(
    port: int, pid: int, path: str, headers: dict[str, str], args: argparse.Namespace
) -> Any:
    command = [
        sys.executable, __file__, "--generate", "--port", str(port), "--pid", str(pid),
        "--path", path,
        "--headers", json.dumps(headers), "--clients", str(args.clients),
        "--seconds", str(args.seconds), "--warmup", str(args.warmup),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    return json.loads(out.stdout)


def orchestrate(args: argparse.Namespace) -> int:
    stacks = ["installed", "plain"] if args.stack == "both" else [args.stack]
    browser = {"Origin": ORIGIN, "Accept-Encoding": "gzip, deflate, br"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = env_for(folder)
        newsletter = [sys.executable, "-m", "service"]
        subprocess.run([*newsletter, "migrate"], env=env, check=True, capture_output=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [*newsletter, "lists", "create", "bench", "--name", "Bench", "--origin", ORIGIN],
            env=env,
            check=True,
            capture_output=True,
        )
        servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        try:
            for stack in stacks:
                prefix = PLAIN_STACK if stack == "plain" else ""
                port = free_port()
                command = [sys.executable, "-c", prefix + SERVE, "serve", "--port", str(port)]
                servers[f"service/{stack}"] = (
                    port,
                    start(command, port, env, folder / f"service-{stack}.log"),
                )
            any_port = next(iter(servers.values()))[0]
            answers, etags = {}, {}
            for path in (SETTINGS_PATH, WIDGET_PATH):
                body, headers = fetch(any_port, path, browser)
                print(f"{path}: {len(body)} bytes, {headers.get('content-encoding', 'identity')}")
                answers[path] = {
                    "body": body.hex(),
                    "headers": {k: v for k, v in headers.items() if k not in STACK_HEADERS},
                }
                etags[path] = headers.get("etag", "")
            (folder / "answers.json").write_text(json.dumps(answers))
            for stack in stacks:
                prefix = PLAIN_STACK if stack == "plain" else ""
                port = free_port()
                command = [
                    sys.executable, "-c", prefix + BARE_APP, str(folder / "answers.json"),
                    str(port),
                ]  # fmt: skip
                servers[f"bare/{stack}"] = (port, start(command, port, env, folder / "bare.log"))

            cases = [
                ("settings", SETTINGS_PATH, browser),
                ("widget.js", WIDGET_PATH, browser),
            ]
            if etags[SETTINGS_PATH]:
                cases.append(
                    (
                        "settings 304",
                        SETTINGS_PATH,
                        {**browser, "If-None-Match": etags[SETTINGS_PATH]},
                    )
                )
            results: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for round_ in range(1, args.rounds + 1):
                for case, path, headers in cases:
                    for stack in stacks:
                        for kind in ("bare", "service"):
                            port, proc = servers[f"{kind}/{stack}"]
                            got = run_generator(port, proc.pid, path, headers, args)
                            results.setdefault((f"{kind}/{stack}", case), []).append(got)
                            print(
                                f"round {round_} {case:13} {kind:7} {stack:9} "
                                f"{got['rps']:7.0f} req/s, server {got['cpu_us']:5.1f} us CPU "
                                f"an answer ({got['server_cpu']:.2f} of a core)  statuses "
                                f"{got['statuses']}  generator cpu {got['generator_cpu']:.2f}",
                                flush=True,
                            )
        finally:
            for _, proc in servers.values():
                proc.terminate()
            for _, proc in servers.values():
                proc.wait(timeout=30)
    print()
    # Two figures per case. Throughput (req/s) is what the machine gave the server, on a
    # shared machine as much the neighbours' doing as its own. CPU per answer is what the
    # server spent: a one-process server's peak throughput is 1 / (CPU per answer), so
    # bare CPU / service CPU is the throughput ratio on an idle machine. Contention only
    # ever adds to it (shared caches, a core's other thread), so each target's figure is
    # its best round, and the verdict is on their ratio.
    met = True

    def median(key: str, kind: str, case: str) -> float:
        if key == "cpu_us":
            return min(r[key] for r in results[(kind, case)])
        return statistics.median(r[key] for r in results[(kind, case)])

    for stack in stacks:
        for case, _, _ in cases:
            service = results[(f"service/{stack}", case)]
            bare = results[(f"bare/{stack}", case)]
            by_cpu = [b["cpu_us"] / s["cpu_us"] for s, b in zip(service, bare, strict=True)]
            by_rps = [s["rps"] / b["rps"] for s, b in zip(service, bare, strict=True)]
            ratio = median("cpu_us", f"bare/{stack}", case) / median(
                "cpu_us", f"service/{stack}", case
            )
            print(
                f"{case:13} {stack:9} service {median('cpu_us', f'service/{stack}', case):5.1f} "
                f"us CPU an answer, bare {median('cpu_us', f'bare/{stack}', case):5.1f} (best "
                f"rounds): {ratio:.2f} of bare (each round: "
                f"{', '.join(f'{r:.2f}' for r in by_cpu)}); median "
                f"req/s {median('rps', f'service/{stack}', case):.0f} vs "
                f"{median('rps', f'bare/{stack}', case):.0f}: "
                f"{statistics.median(by_rps):.2f}"
            )
            if case != "settings 304":
                met = met and ratio >= 0.8
    if len(stacks) == 2:
        for case, _, _ in cases:
            for kind in ("service", "bare"):
                fast = median("cpu_us", f"{kind}/installed", case)
                plain = median("cpu_us", f"{kind}/plain", case)
                print(
                    f"{case:13} {kind:7} CPU an answer, installed stack vs plain: "
                    f"{fast:5.1f} vs {plain:5.1f} us: {plain / fast:.2f}x the capacity"
                )
    print(f"target (settings and widget.js >= 0.8 of bare, by CPU): {'met' if met else 'MISSED'}")
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--rounds", type=int, default=3, help="times each target is measured")
    parser.add_argument("--stack", choices=("installed", "plain", "both"), default="installed")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--headers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
