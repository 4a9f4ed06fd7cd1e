"""The worker: signups acted on and emails at the SMTP server, against aiosmtplib alone.

Everything runs on 127.0.0.1, each part in a process of its own, with an aiosmtpd sink
that records when each message arrives (and for whom):

- ``throughput``: ``--signups`` signups waiting in the intake, one worker process (SQLite:
  `newsletter worker` on the file; PostgreSQL: the same); signups/s from its start to the
  last email at the sink. Reference: one process sending as many messages of the same
  size straight to the sink with aiosmtplib, over as many connections as the worker
  keeps (``NEWSLETTER_WORKER_CONCURRENCY``).
- ``latency``: readers subscribe at ``--rates`` (open loop, for ``--seconds``); for each
  address, the time from its 202 to its email at the sink (p50/p95/p99). SQLite: one
  `newsletter serve` with its worker inside (the default); PostgreSQL: one `newsletter
  serve` with ``NEWSLETTER_RUN_WORKER=false`` and one `newsletter worker`, woken by the
  server. Reference: the same rate of messages sent straight to the sink with
  aiosmtplib, from the moment each is due to its arrival.
- ``request path``: subscribe throughput (closed loop) and p99 at half of that rate,
  SQLite, with the in-process worker on and off (the worker on sends every email).

    python bench/worker_bench.py [--postgres URL] [--seconds 30] [--rates 100,300]
                                 [--signups 5000] [--parts throughput,latency,request]
                                 [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import subscribe_bench as sb

SINK_READY = "sink ready"


# The sink (its own process) ---------------------------------------------------------------


def run_sink(port: int, out: Path) -> None:
    """An SMTP server that keeps nothing but, per message, its recipient and arrival time."""
    from aiosmtpd.smtp import SMTP

    class Handler:
        def __init__(self) -> None:
            self.file = out.open("a", buffering=1)

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.file.write(f"{envelope.rcpt_tos[0]} {time.time():.6f}\n")
            return "250 OK"

    async def main() -> None:
        handler = Handler()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, enable_SMTPUTF8=True), "127.0.0.1", port
        )
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print(SINK_READY, flush=True)
        await stop.wait()
        server.close()

    asyncio.run(main())


@contextlib.contextmanager
def sink(folder: Path, name: str) -> Iterator[tuple[int, Path]]:
    port = sb.free_port()
    out = folder / f"{name}.arrivals"
    out.write_text("")
    command = [sys.executable, __file__, "--sink", str(port), "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == SINK_READY
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def arrivals(out: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in out.read_text().splitlines():
        address, stamp = line.split()
        found.setdefault(address, float(stamp))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_arrivals(out: Path, count: int, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        found = arrivals(out)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# Direct sending with aiosmtplib (the reference; its own process) --------------------------


def sample_message(to: str) -> EmailMessage:
    """About the size of a confirmation email: multipart text and HTML."""
    message = EmailMessage()
    message["From"] = "Bench <news@example.com>"
    message["To"] = to
    message["Subject"] = "Please confirm your subscription to Bench"
    message.set_content("Confirm: https://example.com/confirm/" + "x" * 120 + "\n" * 20)
    message.add_alternative("<p>Confirm</p>" * 60, subtype="html")
    return message


def run_direct(port: int, count: int, rate: float, lanes: int, tag: str) -> None:
    """Send ``count`` messages (at ``rate``/s, or as fast as possible if 0) over ``lanes``
    kept-open connections; print when each was due."""
    import aiosmtplib

    async def main() -> dict[str, Any]:
        conns = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port) for _ in range(lanes)]
        for c in conns:
            await c.connect()
        free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        for c in conns:
            free.put_nowait(c)
        due: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        wall0, mono0 = time.time(), loop.time()

        # Written out once: the reference is the SMTP transport alone.
        data = sample_message("TO").as_bytes()

        async def send(i: int) -> None:
            to = f"{tag}-{i}@example.com"
            smtp = await free.get()
            try:
                await smtp.sendmail("news@example.com", [to], data.replace(b"TO", to.encode(), 1))
            finally:
                free.put_nowait(smtp)

        started, cpu0 = time.time(), time.process_time()
        tasks = []
        for i in range(count):
            if rate:
                at = mono0 + i / rate
                await asyncio.sleep(max(0.0, at - loop.time()))
                due[f"{tag}-{i}@example.com"] = wall0 + (at - mono0)
            tasks.append(asyncio.create_task(send(i)))
        await asyncio.gather(*tasks)
        cpu = time.process_time() - cpu0
        for c in conns:
            await c.quit()
        return {"started": started, "due": due, "cpu": cpu}

    print(json.dumps(asyncio.run(main())))


def direct(port: int, count: int, rate: float, lanes: int, tag: str) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--direct", str(port), "--count", str(count),
        "--rate", str(rate), "--lanes", str(lanes), "--tag", tag,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# Readers subscribing at a rate (its own process) ----------------------------------------


def run_readers(ports: list[int], rate: float, seconds: float, tag: str, slot: int) -> None:
    """Subscribe new addresses at ``rate`` for ``seconds``; print when each 202 came."""
    gen = sb.Generator(ports, tag, slot, sb.STARTED)

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        idle = [await gen.connect(i) for i in range(8)]
        answered: dict[str, float] = {}
        pending: set[asyncio.Task[None]] = set()
        start = loop.time() + 0.05
        total = int(rate * seconds)

        async def send() -> None:
            conn = idle.pop() if idle else await gen.connect(0)
            body = gen.body()
            status = await conn.post(body)
            if status == 202:
                answered[json.loads(body)["email"]] = time.time()
            else:
                gen.errors += 1
            idle.append(conn)

        for k in range(total):
            await asyncio.sleep(max(0.0, start + k / rate - loop.time()))
            task = asyncio.create_task(send())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        return {"answered": answered, "errors": gen.errors}

    print(json.dumps(asyncio.run(main())))


def readers(ports: list[int], rate: float, seconds: float, tag: str) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--readers", ",".join(map(str, ports)), "--rate", str(rate),
        "--seconds", str(seconds), "--tag", tag, "--slot", str(next(sb.RUNS)),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# The orchestration ------------------------------------------------------------------------


def env_for(db_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    env = sb.base_env(db_url)
    env.update(
        {
            "NEWSLETTER_SMTP_PORT": str(smtp_port),
            "NEWSLETTER_RATE_LIMIT_CONFIRMATIONS": "100000000/1h",
            "NEWSLETTER_RUN_WORKER": "true",
            **extra,
        }
    )
    return env


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [float("nan")]

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


def fill_intake(db_url: str, count: int, tag: str) -> None:
    """``count`` signups waiting for the worker, as the request path leaves them."""
    asyncio.run(_fill_async(db_url, count, tag))


async def _fill_async(url: str, count: int, tag: str) -> None:
    from sqlalchemy import insert, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from service.models import MailingList, SignupRequest, utcnow

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        list_id = await conn.scalar(select(MailingList.id).where(MailingList.slug == "bench"))
        now = utcnow()
        await conn.execute(
            insert(SignupRequest),
            [
                {
                    "list_id": list_id,
                    "email": f"{tag}-{i}@example.com",
                    "verdict": "",
                    "received_at": now,
                    "ip_address": "127.0.0.1",
                }
                for i in range(count)
            ],
        )
    await engine.dispose()


def throughput(name: str, db_url: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    lanes = args.concurrency
    with sink(folder, f"{name}-throughput") as (port, out):
        env = env_for(db_url, port, NEWSLETTER_WORKER_CONCURRENCY=str(lanes))
        tag = f"{name}-tp-{next(sb.RUNS)}"
        fill_intake(db_url, args.signups, tag)
        log = (folder / f"{name}-worker.log").open("wb")
        started = time.time()
        worker = subprocess.Popen(
            [sys.executable, "-m", "service", "worker"], env=env, stdout=log, stderr=log
        )
        try:
            wait_for_arrivals(out, 1, timeout=60)
            cpu0 = cpu_seconds(worker.pid)  # start-up (imports, migrations check) is over
            first = len(arrivals(out))
            found = wait_for_arrivals(out, args.signups, timeout=300)
            cpu = cpu_seconds(worker.pid) - cpu0
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        # From the worker's first email (its start-up is not the worker's speed) to its last.
        service = (len(found) - 1) / (max(found.values()) - min(found.values()))
        whole = len(found) / (max(found.values()) - started)
        ref = direct(port, args.signups, 0.0, lanes, f"{name}-direct")
        ref_found = wait_for_arrivals(out, args.signups * 2, timeout=60)
        ref_times = [t for a, t in ref_found.items() if a.startswith(f"{name}-direct")]
        reference = len(ref_times) / (max(ref_times) - ref["started"])
    # Per CPU second: what one process does on a core of its own, however busy the
    # machine is (on a shared machine the wall-clock rates follow everyone else's load).
    per_cpu = (len(found) - first) / cpu
    ref_per_cpu = len(ref_times) / ref["cpu"]
    print(
        f"{name:10} worker: {service:6.0f} signups/s acted on and sent ({whole:.0f}/s from "
        f"process start; {len(found)}/{args.signups} arrived), {per_cpu:6.0f} per CPU second "
        f"| aiosmtplib alone {reference:6.0f} msg/s, {ref_per_cpu:6.0f} per CPU second | "
        f"ratio {service / reference:.2f} (per CPU second {per_cpu / ref_per_cpu:.2f})",
        flush=True,
    )
    return {"signups_per_s": service, "reference_per_s": reference, "per_cpu": per_cpu}


def latency(
    name: str, db_url: str, rate: float, args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    with sink(folder, f"{name}-{rate:.0f}") as (port, out):
        separate = name == "postgresql"
        env = env_for(
            db_url,
            port,
            NEWSLETTER_RUN_WORKER="false" if separate else "true",
            NEWSLETTER_WORKER_CONCURRENCY=str(args.concurrency),
        )
        ports, procs = sb.start_servers("service", env, 1, folder)
        if separate:
            log = (folder / f"{name}-{rate:.0f}-worker.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "service", "worker"], env=env, stdout=log, stderr=log
                )
            )
        try:
            tag = f"{name}-{rate:.0f}-{next(sb.RUNS)}"
            got = readers(ports, rate, args.seconds, tag)
            answered: dict[str, float] = got["answered"]
            found = wait_for_arrivals(out, len(answered), timeout=120)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
        ref = direct(port, int(rate * args.seconds), rate, args.concurrency, f"{name}-ref")
        ref_found = wait_for_arrivals(out, len(found) + len(ref["due"]), timeout=60)
    waits = [found[a] - t for a, t in answered.items() if a in found]
    ref_waits = [ref_found[a] - t for a, t in ref["due"].items() if a in ref_found]
    ours, theirs = percentiles(waits), percentiles(ref_waits)
    print(
        f"{name:10} {rate:4.0f}/s for {args.seconds:.0f}s: 202 -> email p50 {ours['p50']:6.1f} "
        f"ms, p95 {ours['p95']:6.1f} ms, p99 {ours['p99']:6.1f} ms ({len(waits)}/{len(answered)} "
        f"arrived, {got['errors']} errors) | aiosmtplib alone p95 {theirs['p95']:5.1f} ms, "
        f"p99 {theirs['p99']:5.1f} ms",
        flush=True,
    )
    return {"rate": rate, "service": ours, "reference": theirs, "lost": len(answered) - len(waits)}


def request_path(db_url: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """SQLite subscribe peak and p99 at half of it, worker off and on, alternating."""
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    gen_args = argparse.Namespace(clients=16, seconds=min(args.seconds, 5.0), warmup=1.0)
    with sink(folder, "request") as (port, _):
        for round_ in range(args.rounds):
            for mode in ("off", "on"):
                env = env_for(
                    db_url, port, NEWSLETTER_RUN_WORKER="true" if mode == "on" else "false"
                )
                ports, procs = sb.start_servers("service", env, 1, folder)
                try:
                    tag = f"req-{mode}-{round_}"
                    peak = sb.run_generator(ports, f"{tag}-peak", gen_args)
                    half = sb.run_generator(ports, f"{tag}-half", gen_args, rate=peak["rps"] / 2)
                finally:
                    for p in procs:
                        p.terminate()
                        p.wait(timeout=30)
                results[mode].append({"peak": peak["rps"], "p99": half["p99_ms"]})
                print(
                    f"sqlite worker {mode:3}: peak {peak['rps']:6.0f} req/s | at half: p99 "
                    f"{half['p99_ms']:5.1f} ms",
                    flush=True,
                )
    ratios = [
        on["peak"] / off["peak"] for on, off in zip(results["on"], results["off"], strict=True)
    ]
    ratio = statistics.median(ratios)
    p99 = statistics.median(r["p99"] for r in results["on"])
    print(
        f"request path, SQLite: worker on {ratio:.2f} of worker-off throughput (target >= 0.90); "
        f"p99 at half of peak with the worker on {p99:.1f} ms (target < 25)",
        flush=True,
    )
    return {"ratio": ratio, "p99_on": p99}


def orchestrate(args: argparse.Namespace) -> int:
    parts = set(args.parts.split(","))
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        backends = [("sqlite", f"sqlite+aiosqlite:///{folder / 'bench.db'}")]
        if args.postgres:
            url = stack.enter_context(sb.scratch_database(args.postgres))
            backends.append(("postgresql", url.replace("postgresql://", "postgresql+asyncpg://")))
        for _, url in backends:
            sb.prepare_database(env_for(url, 2525))
        if "request" in parts:
            request_path(backends[0][1], args, folder)
        for name, url in backends:
            if "throughput" in parts:
                throughput(name, url, args, folder)
            if "latency" in parts:
                for rate in rates:
                    latency(name, url, rate, args, folder)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of signups per rate")
    parser.add_argument("--rates", default="100,300", help="signups per second, comma-separated")
    parser.add_argument("--signups", type=int, default=5000, help="signups for the throughput")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the request-path part")
    parser.add_argument("--parts", default="throughput,latency,request")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="NEWSLETTER_WORKER_CONCURRENCY, and the reference's connections",
    )
    parser.add_argument("--postgres", help="a PostgreSQL server URL (a scratch database is made)")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--direct", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--readers", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--lanes", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    parser.add_argument("--slot", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink, args.out)
    elif args.direct:
        run_direct(args.direct, args.count, args.rate, args.lanes, args.tag)
    elif args.readers:
        run_readers(
            [int(p) for p in args.readers.split(",")], args.rate, args.seconds, args.tag, args.slot
        )
    else:
        return orchestrate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
