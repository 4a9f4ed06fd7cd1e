"""The docs stay true: every setting, every command, every link, and the test command CI runs.

The README is a short landing page; the reference tables live under ``docs/``: settings
and commands in ``docs/operations.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.cli import build_parser
from service.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
# Every page a reader may open: the README, the top-level guides and docs/.
PAGES = sorted(
    [README, ROOT / "CONTRIBUTING.md", ROOT / "SECURITY.md", *(ROOT / "docs").glob("*.md")]
)
README_MAX_LINES = 200


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_every_setting_is_documented_with_its_default() -> None:
    operations = OPERATIONS.read_text()
    for spec in SETTINGS:
        default = f"`{spec.default}`" if spec.default else "(empty)"
        assert f"| `{spec.env}` | {default} |" in operations, spec.env


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_no_undocumented_setting_is_mentioned(page: Path) -> None:
    known = {spec.env for spec in SETTINGS}
    mentioned = set(re.findall(r"NEWSLETTER_(?!TEST_)[A-Z_]+", page.read_text()))
    assert mentioned <= known, mentioned - known


def test_every_command_is_documented() -> None:
    operations = OPERATIONS.read_text()
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        if nested:
            for child in nested[0].choices:
                assert f"`newsletter {name} {child}" in operations, f"{name} {child}"
        else:
            assert f"`newsletter {name}" in operations, name


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README.read_text(), re.S)
    run_command, test_command = blocks[0], blocks[1]
    assert "pip install ." in run_command and "newsletter demo" in run_command
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_the_readme_is_a_short_landing_page() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def _anchors(page: Path) -> set[str]:
    """The heading anchors GitHub makes: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_points_to_a_file_that_exists(page: Path) -> None:
    for link in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto: ...
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{_name(page)}: {link}"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{_name(page)}: {link} (no such heading)"
