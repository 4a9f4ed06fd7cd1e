"""Logging set-up for the command line and the server: text for people, JSON for machines.

Every line logged while a request is handled carries that request's id (the one sent back
in ``X-Request-ID``), so an operator can find all lines of one request across processes.
"""

from __future__ import annotations

import contextvars
import logging
import sys

__all__ = [
    "configure_logging",
    "request_id_var",
    "silence_server_access_log",
]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


def _formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter  # only JSON logs pay for its import

        return JsonFormatter(
            "{asctime}{levelname}{name}{message}{request_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
            json_ensure_ascii=False,
        )
    return logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(_formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    silence_server_access_log()


def silence_server_access_log() -> None:
    """uvicorn's access log prints full paths, link tokens included; ours redacts them."""
    logging.getLogger("uvicorn.access").disabled = True
