"""What the service hands to sites: the embeddable script, the parts of it that only some
lists use (the proof-of-work solver), and the snippet a site owner pastes. Read from the
package once, kept with their gzip forms."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib.resources import files

import rjsmin
from markupsafe import escape

from service.i18n import texts

__all__ = [
    "PART_SOURCES",
    "WidgetAsset",
    "fallback",
    "parts_version",
    "pow_solver",
    "snippet",
    "widget_asset",
    "widget_part",
]


@dataclass(frozen=True)
class WidgetAsset:
    body: bytes
    gzipped: bytes
    version: str

    @classmethod
    def load(cls) -> WidgetAsset:
        # The parts a list may not use are fetched by version (see `widget_part`). Served
        # minified (comments and spaces are a fifth of what every reader would download).
        source = (
            files("service")
            .joinpath("static/widget.js")
            .read_text()
            .replace('/* parts */""', json.dumps(parts_version()), 1)
        )
        return cls.of(source)

    @classmethod
    def of(cls, source: str) -> WidgetAsset:
        body = rjsmin.jsmin(source).encode()
        return cls(body, gzip.compress(body, 9, mtime=0), hashlib.sha256(body).hexdigest()[:16])


# The widget's parts, each an ES module whose default export the box imports when a list
# uses it: the proof-of-work solver (the one the hosted page inlines too), the optional
# fields (name, consent checkbox, privacy link), the scroll and exit triggers, and what
# the box says when a signup is refused, the choice of an A/B test's variant, targeting.
PART_SOURCES = {
    "pow": ("static/pow.js", "export default powSolve;"),
    "fields": ("static/parts/fields.js", ""),
    "triggers": ("static/parts/triggers.js", ""),
    "answers": ("static/parts/answers.js", ""),
    "ab": ("static/parts/ab.js", ""),
    "target": ("static/parts/target.js", ""),
}


@functools.cache
def _parts() -> dict[str, WidgetAsset]:
    return {
        name: WidgetAsset.of(files("service").joinpath(path).read_text() + "\n" + export + "\n")
        for name, (path, export) in PART_SOURCES.items()
    }


@functools.cache
def parts_version() -> str:
    """One version for all the parts (``?v=``): what widget.js asks for, cached for good."""
    digest = hashlib.sha256()
    for part in _parts().values():
        digest.update(part.body)
    return digest.hexdigest()[:12]


def widget_part(name: str) -> WidgetAsset | None:
    """A lazily loaded part of the widget (``/widget/NAME.js``), or None."""
    return _parts().get(name)


@functools.cache
def pow_solver() -> str:
    """``powSolve(challenge, bits)``: JavaScript that finds a proof of work (a Promise)."""
    return files("service").joinpath("static/pow.js").read_text()


@functools.cache
def widget_asset() -> WidgetAsset:
    return WidgetAsset.load()


def snippet(base_url: str, slug: str) -> str:
    """The one line a site owner pastes next to their articles.

    The script's URL names its version, so browsers keep it for a year without asking
    again; after an upgrade that URL still works (it gets the new script, cached briefly)
    until the snippet is pasted anew.
    """
    src = f"{base_url}/widget.js?v={widget_asset().version}"
    return f'<script src="{src}" data-list="{slug}" async></script>'


def fallback(base_url: str, slug: str, list_name: str, language: str) -> str:
    """For readers without JavaScript: a link to the hosted signup page, pasted beside."""
    words = escape(f"{list_name}: {texts(language)['button']}")
    return f'<noscript><a href="{base_url}/subscribe/{slug}">{words}</a></noscript>'
