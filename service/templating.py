"""The one Jinja2 environment for pages and emails.

Templates live in the repository's top-level ``templates/``; a wheel carries them inside
the package as ``service/templates`` (see pyproject), so both layouts are looked up.
HTML is autoescaped, text templates are not, and an undefined variable is an error.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from service.i18n import fill

__all__ = ["TEMPLATE_DIR", "make_environment"]


def _template_dir() -> Path:
    package = Path(__file__).resolve().parent
    for candidate in (package / "templates", package.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"templates folder not found next to {package}")


TEMPLATE_DIR = _template_dir()


def thousands(number: int) -> str:
    """A count with thousands separators: 1,234,567."""
    return f"{number:,}"


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["fill"] = fill
    env.filters["thousands"] = thousands
    return env
