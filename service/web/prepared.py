"""Answers whose bytes are made once and sent many times, as caches and browsers want them.

The box's script and its list's settings are fetched on every page view of every site
that embeds the box. Each is kept ready in two encodings with a strong ETag per encoding
(a content hash, so every process gives the same one): a request costs the choice of
encoding and, when the browser already has the bytes (``If-None-Match``), a 304.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import Scope

__all__ = ["Headers", "Prepared", "accepts_gzip", "etag_matches"]


def accepts_gzip(value: str) -> bool:
    """Whether an ``Accept-Encoding`` value takes gzip (``gzip;q=0`` refuses it)."""
    value = value.lower()
    if "gzip" not in value and "*" not in value:
        return False
    if ";" not in value:  # no weights: what browsers send
        return True
    for part in value.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in {"gzip", "*"} and params.replace(" ", "") not in {"q=0", "q=0.0"}:
            return True
    return False


def etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (weakly compared, as RFC 9110 asks for GET)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in {tag.strip().removeprefix("W/") for tag in header.split(",")}


Headers = tuple[tuple[str, str], ...]  # fixed header sets: the keys of prepared ones


class _Ready(Response):
    """A response whose status line, headers and body were all made beforehand."""

    def __init__(self, status: int, raw: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code = status
        self.raw_headers = list(raw)  # middleware may add to its own copy
        self.body = body
        self.background = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A body in both encodings, with the strong ETag of each."""

    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str
    media_type: str
    # The header lines of each answer (200 or 304, encoding, header set), made once.
    _raw: dict[tuple[bool, bool, Headers], list[tuple[bytes, bytes]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, body: bytes, media_type: str, *, tag: str = "", level: int = 6) -> Prepared:
        """``tag`` names the content (default: a hash of it); ``level``: gzip's."""
        tag = tag or hashlib.sha256(body).hexdigest()[:20]
        gzipped = gzip.compress(body, level, mtime=0)
        return cls(body, gzipped, f'"{tag}"', f'"{tag}-gz"', media_type)

    def answer(self, scope: Scope, headers: Headers) -> Response:
        """200 with the encoding the client takes, or 304 when it has these bytes.

        ``headers`` (caching, CORS) go on both; ``Vary`` gains ``Accept-Encoding``.
        """
        accept, if_none_match = b"", b""
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = value
            elif name == b"if-none-match":
                if_none_match = value
        compressed = bool(accept) and accepts_gzip(accept.decode("latin-1"))
        etag = self.gzip_etag if compressed else self.etag
        unchanged = bool(if_none_match) and etag_matches(if_none_match.decode("latin-1"), etag)
        key = (compressed, unchanged, headers)
        raw = self._raw.get(key)
        if raw is None:
            raw = self._raw[key] = self._header_lines(compressed, unchanged, headers)
        if unchanged:
            return _Ready(304, raw, b"")
        return _Ready(200, raw, self.gzipped if compressed else self.body)

    def _header_lines(
        self, compressed: bool, unchanged: bool, headers: Headers
    ) -> list[tuple[bytes, bytes]]:
        given = dict(headers)
        vary = given.pop("Vary", "")
        lines = {
            **given,
            "ETag": self.gzip_etag if compressed else self.etag,
            "Vary": f"{vary}, Accept-Encoding" if vary else "Accept-Encoding",
        }
        if not unchanged:
            body = self.gzipped if compressed else self.body
            lines["Content-Type"] = self.media_type
            lines["Content-Length"] = str(len(body))
            if compressed:
                lines["Content-Encoding"] = "gzip"
        return [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in lines.items()
        ]
