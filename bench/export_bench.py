"""Export throughput and memory, on SQLite, against the sqlite3 command-line tool.

Builds a SQLite database with 1,000,000 subscribers (list ``big``; the first 100,000 are
also on list ``small``), each with a signup and a confirmation consent record (IP
address, user agent, wording), then exports each list:

- through the HTTP endpoint (``GET /api/v1/admin/exports``) of a ``newsletter serve``
  process, read by a streaming client;
- through the CLI (``newsletter export``), to a pipe;
- with Debian's ``sqlite3 -csv`` running the export's own SELECT (same columns, same
  rows), the reference, in the same run.

It prints rows per second, each as a ratio to the sqlite3 tool's, and the peak RSS of the
exporting process (the server, a fresh one per size; the CLI process) at 100k and at 1M
rows. Targets: at least 0.25 of the tool's rows/s at 1M rows, and peak RSS at 1M within
10% of the peak at 100k (memory stays flat). Times include starting the CLI process
(which weighs on the 100k run); the server is started before its clock starts.

    python bench/export_bench.py [--rows 1000000] [--small 100000] [--db PATH] [--runs 3]

Needs the ``sqlite3`` command (``apt-get install sqlite3``); without it the script says
so and stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.dialects import sqlite as sqlite_dialect

from service.transfer.exports import ExportQuery, export_sql

TARGET_RATIO = 0.25
TARGET_RSS_GROWTH = 0.10
NAMES = ["Ada Lovelace", "Grace Hopper", 'Jo "JJ" Smith', "Zoë Ünal 😀", "=HYPERLINK(1)", None]


def environment(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{db}",
            "NEWSLETTER_RUN_WORKER": "false",
            "NEWSLETTER_LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


def newsletter(db: Path, *args: str, stdin: str = "") -> str:
    result = subprocess.run(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "service", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment(db),
        check=True,
    )
    return result.stdout


def build(db: Path, rows: int, small: int) -> None:
    """Lists and an admin through the CLI (so the schema is the service's), rows in bulk."""
    newsletter(db, "lists", "create", "big", "--name", "Big")
    newsletter(db, "lists", "create", "small", "--name", "Small")
    conn = sqlite3.connect(db)
    big, small_id = (
        conn.execute("SELECT id FROM lists WHERE slug = ?", (slug,)).fetchone()[0]
        for slug in ("big", "small")
    )
    when = "2025-01-02 03:04:05.000000"

    def subscribers() -> Iterator[tuple[Any, ...]]:
        for i in range(1, rows + 1):
            name = NAMES[i % len(NAMES)]
            attributes = '{"plan": "pro"}' if i % 10 == 0 else "{}"
            yield i, f"reader{i}@example.com", name and f"{name} {i}", attributes, when

    def subscriptions() -> Iterator[tuple[Any, ...]]:
        sid = 0
        for list_id, count in ((big, rows), (small_id, small)):
            for i in range(1, count + 1):
                sid += 1
                yield sid, list_id, i, "confirmed", "n", when, when, when, when, when

    def consent() -> Iterator[tuple[Any, ...]]:
        agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
        for sid in range(1, rows + small + 1):
            ip = f"203.0.{sid % 256}.{sid % 253 + 1}"
            page = f"https://news.example.com/a/{sid % 5000}"
            yield sid, "subscribe", when, ip, agent, page, "Yes, send me the newsletter", "form"
            yield sid, "confirm", when, ip, agent, None, "Confirm your subscription", "link"

    with conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.executemany(
            "INSERT INTO subscribers (id, email, name, attributes, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            subscribers(),
        )
        conn.executemany(
            "INSERT INTO subscriptions (id, list_id, subscriber_id, status, confirm_nonce, "
            "created_at, updated_at, subscribed_at, confirmation_sent_at, confirmed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            subscriptions(),
        )
        conn.executemany(
            "INSERT INTO consent_records (subscription_id, action, created_at, ip_address, "
            "user_agent, page_url, wording, method) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            consent(),
        )
    conn.execute("ANALYZE")
    conn.close()


def reference_sql(slug: str) -> str:
    sql = export_sql(ExportQuery(list_slug=slug))
    return str(
        sql.compile(dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True})
    )


def run_sqlite3(db: Path, slug: str) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - the sqlite3 tool on PATH is the reference
        ["sqlite3", "-csv", "-header", str(db), reference_sql(slug)],  # noqa: S607
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines = sum(chunk.count(b"\n") for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))  # type: ignore[union-attr]
    proc.wait()
    return time.perf_counter() - start, lines - 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def run_http(db: Path, slug: str, token: str) -> tuple[float, int, int]:
    """(seconds, rows, peak RSS of the server in KiB), with a fresh server."""
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        env=environment(db, NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        headers = {"Authorization": f"Bearer {token}"}
        lines = 0
        start = time.perf_counter()
        with httpx.stream(
            "GET", f"{url}/api/v1/admin/exports?list={slug}", headers=headers, timeout=600
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_raw(1 << 20):
                lines += chunk.count(b"\n")  # no line breaks inside the sample cells
        elapsed = time.perf_counter() - start
        return elapsed, lines - 1, peak_rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait(30)


def run_cli(db: Path, slug: str) -> tuple[float, int, int]:
    """(seconds, rows, peak RSS of the CLI process in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "service", "export", "--list", slug],
        env=environment(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines = sum(chunk.count(b"\n") for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"newsletter export failed ({status})")
    return elapsed, lines - 1, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--db", type=Path, help="database to build (or reuse, if it exists)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per way (median)")
    args = parser.parse_args()
    if shutil.which("sqlite3") is None:
        print(
            "The sqlite3 command-line tool is missing, and it is this benchmark's reference.\n"
            "Install it (Debian/Ubuntu: apt-get install sqlite3) and run again.",
            file=sys.stderr,
        )
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.db"
        if not db.exists():
            print(f"building {db}: {args.rows:,} subscribers ...", flush=True)
            start = time.perf_counter()
            build(db, args.rows, args.small)
            print(f"  built in {time.perf_counter() - start:.1f} s", flush=True)
            newsletter(db, "admin", "create", "bench", stdin="bench-password-1234\n")
        token = newsletter(db, "admin", "token", "create", "bench", "--user", "bench").split()[0]

        results: dict[str, dict[str, tuple[float, int, int]]] = {}
        for slug in ("small", "big"):
            ways: dict[str, list[tuple[float, int, int]]] = {"sqlite3": [], "http": [], "cli": []}
            for _ in range(args.runs):  # interleaved, so drift hits every way alike
                seconds, rows = run_sqlite3(db, slug)
                ways["sqlite3"].append((seconds, rows, 0))
                ways["http"].append(run_http(db, slug, token))
                ways["cli"].append(run_cli(db, slug))
            results[slug] = {}
            for way, runs in ways.items():
                counts = {r[1] for r in runs}
                assert len(counts) == 1, (way, counts)
                median = statistics.median(r[0] for r in runs)
                results[slug][way] = (median, runs[0][1], max(r[2] for r in runs))
        report(results)
        return 0


def report(results: dict[str, dict[str, tuple[float, int, int]]]) -> None:
    ok = True
    for slug, ways in results.items():
        rows = ways["sqlite3"][1]
        assert ways["http"][1] == rows == ways["cli"][1], "every way exports the same rows"
        reference = rows / ways["sqlite3"][0]
        print(f"\n{rows:,} rows (list {slug}):")
        print(f"  sqlite3 -csv   {reference:>12,.0f} rows/s  (reference)")
        for way in ("http", "cli"):
            seconds, _, rss = ways[way]
            rate = rows / seconds
            ratio = rate / reference
            if slug == "big":  # the target is for the large export; start-up weighs on small
                ok &= ratio >= TARGET_RATIO
            print(
                f"  {way:<13}  {rate:>12,.0f} rows/s  {ratio:.2f} of sqlite3   "
                f"peak RSS {rss / 1024:.1f} MiB"
            )
    print()
    for way in ("http", "cli"):
        small, big = results["small"][way][2], results["big"][way][2]
        growth = big / small - 1
        ok &= growth <= TARGET_RSS_GROWTH
        print(
            f"{way}: peak RSS {small / 1024:.1f} MiB at {results['small'][way][1]:,} rows, "
            f"{big / 1024:.1f} MiB at {results['big'][way][1]:,} rows ({growth:+.1%})"
        )
    print(
        f"\ntargets: >= {TARGET_RATIO} of sqlite3's rows/s at {results['big']['sqlite3'][1]:,} "
        f"rows, peak RSS growth <= "
        f"{TARGET_RSS_GROWTH:.0%}: {'met' if ok else 'NOT met'}"
    )


if __name__ == "__main__":
    sys.exit(main())
