"""What the command line tells a site owner at its edges: every setting in the help, the
valid names on a typo, a snippet that works without JavaScript, a demo that says which
port is taken."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from service.cli import main
from service.lists import LIST_FIELDS
from service.web.assets import widget_asset
from service.widget_settings import BOX_SETTINGS


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in __import__("os").environ if n.startswith("NEWSLETTER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://news.example.org")
    monkeypatch.setenv("NEWSLETTER_LOG_LEVEL", "WARNING")
    return tmp_path


def test_lists_set_help_names_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["lists", "set", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    for name in (*LIST_FIELDS, *BOX_SETTINGS):
        assert name in shown, name


def test_lists_help_says_everything_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("lists"))
    for word in ("create", "show", "change", "snippet"):
        assert word in line, line


def test_an_unknown_setting_is_named_with_the_valid_ones(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lists", "create", "daily", "--name", "The Daily Brief"]) == 0
    capsys.readouterr()
    assert main(["lists", "set", "daily", "colour=red", "delay=5"]) == 1
    error = capsys.readouterr().err
    assert "unknown setting colour" in error
    assert "proofOfWork" in error and "double_opt_in" in error
    assert main(["lists", "set", "daily", "proofOfWork=true"]) == 0


def test_the_snippet_comes_with_a_link_for_readers_without_javascript(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lists", "create", "tages", "--name", "Die <Tages> Post", "--language", "de"]) == 0
    capsys.readouterr()
    assert main(["lists", "snippet", "tages"]) == 0
    script, noscript = capsys.readouterr().out.strip().splitlines()
    # The script's URL names its version: browsers keep it without asking again.
    version = widget_asset().version
    assert script == (
        f'<script src="https://news.example.org/widget.js?v={version}" data-list="tages" '
        "async></script>"
    )
    assert noscript == (
        '<noscript><a href="https://news.example.org/subscribe/tages">'
        "Die &lt;Tages&gt; Post: Abonnieren</a></noscript>"
    )


@pytest.mark.parametrize("option", ["--port", "--article-port"])
def test_the_demo_names_a_port_in_use_and_leaves_nothing_behind(
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(cli_env))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert main(["demo", option, str(port)]) == 1
    error = capsys.readouterr().err.strip()
    assert error == f"newsletter demo: port {port} is in use; choose another with {option}"
    assert not list(cli_env.glob("newsletter-demo-*"))


def test_export_help_gives_the_date_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    shown = capsys.readouterr().out
    assert "--since YYYY-MM-DD" in shown and "--until YYYY-MM-DD" in shown


def test_the_demo_refuses_one_port_for_both(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--port", "8123", "--article-port", "8123"]) == 1
    assert capsys.readouterr().err.strip() == (
        "newsletter demo: --port and --article-port are both 8123; choose two ports"
    )
