"""The README stays true: every setting, every command, and the test command CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from service.cli import build_parser
from service.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for spec in SETTINGS:
        default = f"`{spec.default}`" if spec.default else "(empty)"
        assert f"| `{spec.env}` | {default} |" in README, spec.env


def test_no_undocumented_setting_is_mentioned() -> None:
    known = {spec.env for spec in SETTINGS}
    mentioned = set(re.findall(r"NEWSLETTER_(?!TEST_)[A-Z_]+", README))
    assert mentioned <= known, mentioned - known


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        if nested:
            for child in nested[0].choices:
                assert f"`newsletter {name} {child}" in README, f"{name} {child}"
        else:
            assert f"`newsletter {name}" in README, name


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    run_command, test_command = blocks[0], blocks[1]
    assert "pip install ." in run_command and "newsletter demo" in run_command
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
