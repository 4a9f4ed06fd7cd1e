"""The shape the code promises: one module changes a subscription's status, one package
knows the database, no import circles, thin endpoints that do not lean on each other."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import service

PACKAGE = Path(service.__file__).parent
STATE_MACHINE = PACKAGE / "subscriptions.py"

# Assigning a status to a Subscription row, an INSERT or UPDATE that sets one, or a
# statement that writes the subscriptions table.
WRITES = re.compile(
    r"\.status\s*=\s*SubscriptionStatus"
    r"|status\s*=\s*SubscriptionStatus\."
    r"|[\"']status[\"']\s*:\s*SubscriptionStatus"
    r"|(?:insert|update)\w*\((?:[^()]*,\s*)?Subscription\s*\)"
)


def test_only_the_state_machine_changes_a_subscription_status() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != STATE_MACHINE and "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if WRITES.search(line)
    ]
    assert found == []
    assert WRITES.search(STATE_MACHINE.read_text()), "the pattern still finds the writes"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path) -> set[str]:
    """The service modules a module imports when it is imported (not inside functions)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("service"):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("service"))
    return names


def test_no_import_circle() -> None:
    modules = _modules()
    graph = {
        name: {
            dep
            for dep in _imports(path)
            if dep in modules and dep != name and not name.startswith(dep + ".")
        }
        for name, path in modules.items()
    }
    circles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    circles.append(" -> ".join([*trail, dep]))
                elif dep not in trail and len(trail) < 12:
                    stack.append((dep, [*trail, dep]))
    assert circles == []


def test_no_module_outside_the_db_package_asks_which_database_it_runs_on() -> None:
    asks = re.compile(r"dialect\.name|sqlalchemy\.dialects|\bis_sqlite\b|\.per_backend\(")
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for name, path in _modules().items()
        if not name.startswith("service.db")
        and name not in {"service.worker", "service.settings"}  # picks; reads a URL
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if asks.search(line)
    ]
    assert found == []


ENDPOINTS = {
    "service.web.api",
    "service.web.pages",
    "service.web.hosted",
    "service.web.widget",
    "service.web.devmail",
    "service.web.health",
    "service.web.metrics",
    "service.web.openapi",
    "service.web.admin.api",
    "service.web.admin.pages",
    "service.web.admin.data",
    "service.web.admin.signin",
    "service.web.admin.security",
    "service.web.admin.security_api",
    "service.web.admin.blocklist",
    "service.web.admin.people",
}


def test_no_endpoint_module_imports_another() -> None:
    modules = _modules()
    found = {
        name: sorted(_imports(modules[name]) & ENDPOINTS)
        for name in ENDPOINTS
        if _imports(modules[name]) & ENDPOINTS
    }
    assert found == {}


def test_the_endpoint_that_takes_signups_is_a_few_lines() -> None:
    from service.web import api

    lines = inspect.getsource(api.subscribe).splitlines()
    assert len(lines) <= 25, len(lines)


def test_importing_the_settings_loads_nothing_else_of_the_service() -> None:
    code = (
        "import sys, service.settings; "
        "print(sorted(m for m in sys.modules if m.startswith('service')))"
    )
    loaded = subprocess.run(  # a fresh interpreter: this one has imported everything
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "['service', 'service._version', 'service.settings']"
