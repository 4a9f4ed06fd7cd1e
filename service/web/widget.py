"""The embeddable script and the one request it makes: the list's box settings.

Both are fetched on every page view of every site with the box, so both are answered from
bytes made beforehand (``service.web.prepared``: gzip, strong ETags, 304s).

``/widget.js`` is read once at start-up. The plain URL is cached briefly and revalidated;
the versioned URL (``/widget.js?v=HASH``, what the snippet prints) never changes, so it
is cached for a year; an old version's URL gets today's script, cached briefly.

A list's settings answer is made once per list, language and whether the calling origin
may sign people up, and made again when the list cache hands over a newly read list (at
once after a change made here, within about twice the cache's TTL after one made
elsewhere). Browsers keep it a minute and may use it for ten more while they check it.
"""

from __future__ import annotations

import functools
import json
import weakref

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.i18n import LANGUAGES, texts
from service.models import MailingList
from service.state import AppRequest
from service.web.assets import widget_asset
from service.web.cors import origin_allowed
from service.web.prepared import Prepared
from service.web.refusals import api_error
from service.widget_settings import WIDGET_TEXTS, effective

__all__ = ["routes"]

# A reader whose copy is older than max-age still sees the box at once: the browser uses
# it and revalidates in the background (the next page view gets the new one).
SHORT_CACHE = "public, max-age=300, stale-while-revalidate=86400"
LONG_CACHE = "public, max-age=31536000, immutable"
SETTINGS_CACHE = "public, max-age=60, stale-while-revalidate=600"
# A public script: any page may load it, including with crossorigin="anonymous".
_SCRIPT = (("Access-Control-Allow-Origin", "*"), ("Cross-Origin-Resource-Policy", "cross-origin"))
SCRIPT_HEADERS = (*_SCRIPT, ("Cache-Control", SHORT_CACHE))
VERSIONED_SCRIPT_HEADERS = (*_SCRIPT, ("Cache-Control", LONG_CACHE))
SETTINGS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Vary", "Origin"),
    ("Cache-Control", SETTINGS_CACHE),
)

# Settings answers by list: keyed by the list object the cache holds, so a newly read
# list (changed or not) starts afresh and a dropped one takes its answers with it.
_answers: weakref.WeakKeyDictionary[MailingList, dict[tuple[str, bool, str], Prepared]] = (
    weakref.WeakKeyDictionary()
)


@functools.cache
def _script() -> Prepared:
    asset = widget_asset()
    return Prepared(
        asset.body,
        asset.gzipped,
        f'"{asset.version}"',
        f'"{asset.version}-gz"',
        "text/javascript; charset=utf-8",
    )


async def widget_js(request: Request) -> Response:
    versioned = bool(request.scope["query_string"]) and (
        request.query_params.get("v") == widget_asset().version
    )
    return _script().answer(
        request.scope, VERSIONED_SCRIPT_HEADERS if versioned else SCRIPT_HEADERS
    )


async def widget_config(request: AppRequest) -> Response:
    slug = request.path_params["slug"]
    state = request.state
    mailing_list = await state["lists"].get(slug)
    if mailing_list is None:
        return api_error(
            404,
            f"There is no list {slug!r}.",
            headers={"Access-Control-Allow-Origin": "*", "Vary": "Origin"},
        )
    language = mailing_list.language
    if request.scope["query_string"]:
        language = request.query_params.get("lang", language)
        if language not in LANGUAGES:
            language = mailing_list.language
    base_url = state["settings"].base_url
    key = (language, origin_allowed(request, mailing_list), base_url)
    answers = _answers.setdefault(mailing_list, {})
    prepared = answers.get(key)
    if prepared is None:
        prepared = answers[key] = _settings_answer(mailing_list, *key)
    return prepared.answer(request.scope, SETTINGS_HEADERS)


def _settings_answer(
    mailing_list: MailingList, language: str, allowed: bool, base_url: str
) -> Prepared:
    words = texts(language)
    body = {
        "list": mailing_list.slug,
        "name": mailing_list.name,
        "language": language,
        "endpoint": f"{base_url}/api/v1/lists/{mailing_list.slug}/subscriptions",
        "origin_allowed": allowed,
        "settings": effective(mailing_list, language),
        "texts": {key: words[key] for key in WIDGET_TEXTS},
    }
    # As Starlette's JSONResponse writes it.
    data = json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
    return Prepared.of(data.encode(), "application/json")


routes = [
    Route("/widget.js", widget_js, methods=["GET", "HEAD"]),
    Route("/api/v1/lists/{slug}/widget", widget_config, methods=["GET"]),
]
