"""The `newsletter` command: its ``main()`` in process, and the installed command run as a
user runs it (serving until Ctrl-C)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from support import CLIResult, run_cli


def run(args: list[str], tmp_path: Path, **env: str) -> CLIResult:
    return run_cli(args, {"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", **env})


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    for command in ("serve", "lists"):
        assert command in result.stdout
    lists_help = run(["lists", "--help"], tmp_path)
    assert "create" in lists_help.stdout and "list" in lists_help.stdout
    create_help = run(["lists", "create", "--help"], tmp_path)
    assert "--origin" in create_help.stdout and "--name" in create_help.stdout


def test_create_and_show_lists(tmp_path: Path) -> None:
    created = run(
        [
            "lists",
            "create",
            "daily",
            "--name",
            "The Daily Brief",
            "--origin",
            "https://WWW.Example.com/",
            "--origin",
            "http://localhost:3000",
        ],
        tmp_path,
        NEWSLETTER_BASE_URL="https://news.example.org",
    )
    assert created.returncode == 0, created.stderr
    assert "https://www.example.com" in created.stdout
    assert "https://news.example.org/api/v1/lists/daily/subscriptions" in created.stdout
    shown = run(["lists", "list"], tmp_path)
    assert (
        "daily\tThe Daily Brief\ten\tdouble opt-in\thttp://localhost:3000, https://www.example.com"
        in shown.stdout
    )
    again = run(["lists", "create", "daily", "--name", "Again"], tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = run(["lists", "create", "Bad Slug!", "--name", "X"], tmp_path)
    assert bad.returncode == 1 and "slug" in bad.stderr
    origin = run(["lists", "create", "x", "--name", "X", "--origin", "example.com/path"], tmp_path)
    assert origin.returncode == 1 and "origin" in origin.stderr


def test_bad_configuration_is_a_clear_message(tmp_path: Path) -> None:
    result = run(["serve"], tmp_path, NEWSLETTER_SMTP_PORT="lots", NEWSLETTER_SMTP_PASSWORD="pw")
    assert result.returncode == 2
    assert "NEWSLETTER_SMTP_PORT='lots'" in result.stderr and "whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_runs_with_nothing_configured_and_stops_cleanly(tmp_path: Path) -> None:
    """The installed `newsletter serve` in an empty folder: SQLite file, mail catcher, clean
    shutdown on Ctrl-C."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    command = shutil.which("newsletter", path=str(Path(sys.executable).parent))
    assert command, "pip install -e . installs the `newsletter` command next to python"
    process = subprocess.Popen(
        [command, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert process.poll() is None, "server exited during start-up"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dev/mail", timeout=5) as r:
            assert "Development only" in r.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert (tmp_path / "newsletter.db").exists()
    assert "DEVELOPMENT MAIL CATCHER ON" in output
    assert "outbox worker stopped" in output
    assert "Traceback" not in output


def test_demo_serves_the_service_and_an_article_with_the_box(tmp_path: Path) -> None:
    import json
    import signal
    import socket
    import time
    import urllib.request

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    service, article = ports
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environ["TMPDIR"] = str(temporary)  # where the demo keeps its data while it runs
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service",
            "demo",
            "--port",
            str(service),
            "--article-port",
            str(article),
        ],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{service}/healthz", timeout=1):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{article}/", timeout=5) as r:
            page = r.read().decode()
        assert f'<script src="http://127.0.0.1:{service}/widget.js?v=' in page
        request = urllib.request.Request(
            f"http://127.0.0.1:{service}/api/v1/lists/demo/widget",
            headers={"Origin": f"http://127.0.0.1:{article}"},
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            config = json.loads(r.read())
        assert config["origin_allowed"] is True
        assert config["settings"]["trigger"] == "delay"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{article}/" in output
    assert f"http://127.0.0.1:{service}/dev/mail" in output
    assert "Traceback" not in output
    assert process.returncode == 0  # Ctrl+C is how the demo stops
    assert not list(temporary.glob("newsletter-demo-*")), "the demo's data goes with it"
