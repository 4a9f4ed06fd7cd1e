"""The one refusal type. Every rule that says no raises a ``Refusal``; the web layer renders
it once, as JSON or as a page, for every endpoint (``service.web.refusals``).

A refusal is the caller's fault or the caller's wait (4xx, 503), never a bug: it carries
what a person needs to act on it: a status, a stable code, a message, the fields at fault
and, where waiting helps, how long to wait.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CODES", "Refusal"]

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class Refusal(Exception):
    """A request the service will not carry out, and why."""

    status: int = 400
    code: str = ""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        fields: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code or self.code or CODES.get(self.status, "error")
        self.fields: dict[str, str] = dict(fields or {})
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"
