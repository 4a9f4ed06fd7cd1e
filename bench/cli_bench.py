"""How long the command line takes to start, for the commands that need no database.

Runs each command ``--runs`` times as a user runs it (the installed ``newsletter``
script, a fresh process each time), interleaved with the reference, ``python -c pass``
(the interpreter's own start), and prints the median wall time and the median CPU time
(user + system) of each. Target: every one under 150 ms.

Start-up is one thread reading files it has just read (the page cache): on an idle
machine its wall time is its CPU time. On a busy shared one the wall time is mostly
waiting for a core, so the verdict is on CPU time; the wall times are printed beside.

    python bench/cli_bench.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 150.0


def commands(newsletter: str, folder: Path) -> dict[str, list[str]]:
    missing = str(folder / "missing.csv")
    return {
        "python -c pass (reference)": [sys.executable, "-c", "pass"],
        "newsletter --help": [newsletter, "--help"],
        "newsletter serve --help": [newsletter, "serve", "--help"],
        "newsletter lists create --help": [newsletter, "lists", "create", "--help"],
        "newsletter admin token create --help": [newsletter, "admin", "token", "create", "-h"],
        "newsletter export --help": [newsletter, "export", "--help"],
        "newsletter import (no such file)": [newsletter, "import", "--list", "x", missing],
        "newsletter lists set (not KEY=VALUE)": [newsletter, "lists", "set", "x", "oops"],
    }


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run, in ms."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    elapsed = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    args = parser.parse_args()
    newsletter = shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env["NEWSLETTER_DATABASE_URL"] = f"sqlite:///{folder / 'never-made.db'}"
        targets = commands(newsletter, folder)
        times: dict[str, list[float]] = {name: [] for name in targets}
        cpus: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.runs):  # interleaved: load from elsewhere falls on all alike
            for name, command in targets.items():
                wall, cpu = run_once(command, env)
                times[name].append(wall)
                cpus[name].append(cpu)
        made = (folder / "never-made.db").exists()
    reference = statistics.median(cpus["python -c pass (reference)"])
    met = True
    for name, spent in cpus.items():
        median = statistics.median(spent)
        print(
            f"{name:40} CPU {median:6.1f} ms ({median - reference:+6.1f} over the "
            f"interpreter's start), wall {statistics.median(times[name]):6.1f} ms"
        )
        if "reference" not in name:
            met = met and median < TARGET_MS
    print(f"a database file was {'MADE (wrong)' if made else 'not made'}")
    print(f"target (every command under {TARGET_MS:.0f} ms, medians): {'met' if met else 'MISSED'}")
    return 0 if met and not made else 1


if __name__ == "__main__":
    sys.exit(main())
