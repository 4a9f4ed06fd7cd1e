"""The command line starts at once: what it loads before it knows which command runs.

``newsletter --help`` and a command's own ``--help`` load no database layer, web framework
or migration tool; a command imports those when it runs. (How long start-up takes is
measured by bench/cli_bench.py, not here.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "alembic", "starlette", "uvicorn", "jinja2", "asyncpg", "aiosqlite")

PROBE = """
import contextlib, io, json, sys
from service.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
    main(sys.argv[1:])
print(json.dumps({"help": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def loaded_by(args: list[str]) -> tuple[str, set[str]]:
    """What ``newsletter ARGS`` prints and every module it imported, from a fresh
    interpreter (this one has imported everything)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    found = json.loads(result.stdout)
    return found["help"], set(found["modules"])


@pytest.mark.parametrize(
    "args", [["--help"], ["lists", "--help"], ["serve", "--help"], ["admin", "token", "--help"]]
)
def test_help_loads_no_database_web_or_migration_library(args: list[str]) -> None:
    shown, modules = loaded_by(args)
    assert "usage: newsletter" in shown
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
    assert "service.app" not in modules and "service.db" not in modules


def test_serve_uses_uvloop_and_httptools_when_installed_else_asyncio_and_h11(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.server import server_stack

    for name in ("uvloop", "httptools"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    assert server_stack() == ("asyncio", "h11")
    monkeypatch.undo()
    loop, http = server_stack()
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        pytest.skip("the [fast] extra is not installed")
    assert (loop, http) == ("uvloop", "httptools")
