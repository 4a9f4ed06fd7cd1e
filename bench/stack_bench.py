"""What the service's own stack costs a request, without a server or a network in the way.

Calls the ASGI app directly (the same call uvicorn makes), in one process, for the page
view requests (the box's settings and ``/widget.js``, as a browser sends them), and
reports microseconds of CPU per request for:

- ``bare``: a Starlette app with one route answering the same bytes (the reference);
- ``service, access log off``: the service's app at log level WARNING;
- ``service``: the same at the default level INFO, text or JSON lines written to a file
  as ``newsletter serve`` writes them (batched), so the difference is the access log.

Targets alternate in short slices and each figure is the best of ``--rounds`` slices, so
that load from elsewhere on a shared machine (which only ever adds time) is left out.

    python bench/stack_bench.py [--requests 5000] [--rounds 7] [--format text]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from service.app import create_app
from service.lists import create_list
from service.logs import configure_logging
from service.settings import Settings

ORIGIN = "https://www.example.com"
BROWSER = [
    (b"host", b"news.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36"),
    (b"accept", b"*/*"),
    (b"origin", ORIGIN.encode()),
    (b"accept-encoding", b"gzip, deflate, br"),
]
PATHS = {"settings": "/api/v1/lists/bench/widget", "widget.js": "/widget.js"}

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope(path: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": BROWSER,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": state,
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def requests(app: App, path: str, state: dict[str, Any], count: int) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    for _ in range(count):
        await app(scope(path, dict(state)), receive, send)
    return sent


async def slice_time(app: App, path: str, state: dict[str, Any], count: int) -> float:
    start = time.process_time()
    await requests(app, path, state, count)
    return (time.process_time() - start) / count * 1e6


def bare_app(answers: dict[str, tuple[bytes, list[tuple[bytes, bytes]]]]) -> Starlette:
    def endpoint(body: bytes, headers: dict[str, str]) -> Any:
        async def serve(request: Any) -> Response:
            return Response(body, headers=headers)

        return serve

    routes = []
    for path, (body, raw) in answers.items():
        keep = {"content-type", "content-encoding", "cache-control", "vary", "etag"}
        headers = {k.decode(): v.decode() for k, v in raw if k.decode() in keep}
        routes.append(Route(path, endpoint(body, headers)))
    return Starlette(routes=routes)


async def run(args: argparse.Namespace, folder: Path) -> None:
    os.environ.update(
        NEWSLETTER_DATABASE_URL=f"sqlite:///{folder / 'bench.db'}",
        NEWSLETTER_SECRET_KEY="bench-secret-key-that-is-long-enough-0123456789",  # noqa: S106
        NEWSLETTER_RUN_WORKER="false",
        NEWSLETTER_MIGRATE_ON_START="true",
        NEWSLETTER_BASE_URL="https://news.example.com",
    )
    settings = Settings.from_env()
    log_file = (folder / "access.log").open("w")
    configure_logging("INFO", args.format, batched=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(log_file)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        state = dict(manager._state)
        await create_list(state["db"], slug="bench", name="Bench", origins=[ORIGIN])
        answers = {}
        for path in PATHS.values():
            start, body = (await requests(app, path, state, 1))[:2]
            answers[path] = (body["body"], start["headers"])
        bare = bare_app(answers)
        service_logger = logging.getLogger()
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for case, path in PATHS.items():
                for name, target, level in (
                    ("bare", bare, logging.INFO),
                    ("service, access log off", app, logging.WARNING),
                    ("service", app, logging.INFO),
                ):
                    service_logger.setLevel(level)
                    spent = await slice_time(target, path, state, args.requests)
                    times.setdefault((case, name), []).append(spent)
        service_logger.setLevel(logging.INFO)
    handler.flush()
    log_file.close()
    lines = sum(1 for _ in (folder / "access.log").open())
    print(f"{args.requests} requests a slice, best of {args.rounds} slices, {args.format} logs")
    print(f"({lines} access log lines written)")
    for case in PATHS:
        best = {name: min(times[(c, name)]) for c, name in times if c == case}
        bare_us = best["bare"]
        for name, spent in best.items():
            print(f"{case:10} {name:24} {spent:6.1f} us/request  ({spent - bare_us:+6.1f} vs bare)")
        print(
            f"{case:10} access log line: {best['service'] - best['service, access log off']:.1f} us"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per slice")
    parser.add_argument("--rounds", type=int, default=7, help="slices per target")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
