"""What the service hands to sites: the embeddable script, its proof-of-work solver, and
the snippet a site owner pastes. Read from the package once, kept with their gzip forms."""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib.resources import files

import rjsmin
from markupsafe import escape

from service.i18n import texts

__all__ = ["WidgetAsset", "fallback", "pow_solver", "snippet", "widget_asset"]


@dataclass(frozen=True)
class WidgetAsset:
    body: bytes
    gzipped: bytes
    version: str

    @classmethod
    def load(cls) -> WidgetAsset:
        # One proof-of-work solver for the box and the hosted page: spliced in here. Served
        # minified (comments and spaces are a fifth of what every reader would download).
        source = (
            files("service")
            .joinpath("static/widget.js")
            .read_text()
            .replace("  /* pow.js */\n", pow_solver(), 1)
        )
        body = rjsmin.jsmin(source).encode()
        return cls(body, gzip.compress(body, 9, mtime=0), hashlib.sha256(body).hexdigest()[:16])


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
