"""Answers whose bytes are made once and sent many times, as caches and browsers want them.

The box's script and its list's settings are fetched on every page view of every site
that embeds the box. Each is kept ready in two encodings with a strong ETag per encoding
(a content hash, so every process gives the same one): a request costs the choice of
encoding and, when the browser already has the bytes (``If-None-Match``), a 304.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import Response

__all__ = ["Prepared", "accepts_gzip", "etag_matches"]


def accepts_gzip(headers: Headers) -> bool:
    """Whether the client takes gzip (``Accept-Encoding``; ``gzip;q=0`` refuses it)."""
    value = headers.get("accept-encoding", "")
    if "gzip" not in value and "*" not in value:
        return False
    for part in value.lower().split(","):
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A body in both encodings, with the strong ETag of each."""

    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str
    media_type: str

    @classmethod
    def of(cls, body: bytes, media_type: str, *, tag: str = "", level: int = 6) -> Prepared:
        """``tag`` names the content (default: a hash of it); ``level``: gzip's."""
        tag = tag or hashlib.sha256(body).hexdigest()[:20]
        gzipped = gzip.compress(body, level, mtime=0)
        return cls(body, gzipped, f'"{tag}"', f'"{tag}-gz"', media_type)

    def answer(self, request_headers: Headers, headers: Mapping[str, str]) -> Response:
        """200 with the encoding the client takes, or 304 when it has these bytes.

        ``headers`` (caching, CORS) go on both; ``Vary`` gains ``Accept-Encoding``.
        """
        compressed = accepts_gzip(request_headers)
        etag = self.gzip_etag if compressed else self.etag
        vary = headers.get("Vary")
        sent = {
            **headers,
            "ETag": etag,
            "Vary": f"{vary}, Accept-Encoding" if vary else "Accept-Encoding",
        }
        if etag_matches(request_headers.get("if-none-match", ""), etag):
            return Response(status_code=304, headers=sent)
        if compressed:
            sent["Content-Encoding"] = "gzip"
            return Response(self.gzipped, media_type=self.media_type, headers=sent)
        return Response(self.body, media_type=self.media_type, headers=sent)
