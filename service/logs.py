"""Logging set-up for the command line and the server: text for people, JSON for machines.

Every line logged while a request is handled carries that request's id (the one sent back
in ``X-Request-ID``), so an operator can find all lines of one request across processes.

The server logs a line per request, so a line must cost little: records skip what no
format here shows (the calling function, thread and process names), the time stamp is
formatted once a second, and the server's lines are written in batches (``batched``):
every 0.2 s or 256 lines, a warning or worse at once.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from typing import IO, Any

__all__ = [
    "BatchedStreamHandler",
    "JsonLinesFormatter",
    "TextFormatter",
    "configure_logging",
    "fast_line_handler",
    "info_line",
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


class _LineFormatter(logging.Formatter):
    """A formatter that also makes a line without a record (``line``), the same as
    ``format`` would make of a record with those values: the access log's fast path.

    The date and time are formatted once a second, not once a line.
    """

    _stamp: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._time(record.created, datefmt)

    def _time(self, created: float, datefmt: str | None) -> str:
        second = int(created)
        cached, stamp = self._stamp
        if cached != second:
            stamp = time.strftime(datefmt or self.default_time_format, self.converter(second))
            self._stamp = (second, stamp)  # one assignment: threads see a matching pair
        if datefmt:
            return stamp
        return f"{stamp},{int((created - second) * 1000):03d}"

    def line(
        self, created: float, level: str, name: str, request_id: str, message: str,
        fields: dict[str, Any],
    ) -> str:  # fmt: skip
        raise NotImplementedError


class TextFormatter(_LineFormatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")

    def line(
        self, created: float, level: str, name: str, request_id: str, message: str,
        fields: dict[str, Any],
    ) -> str:  # fmt: skip
        return f"{self._time(created, None)} {level:<7} {name} [{request_id}] {message}"


# What every record has; anything else on a record came as ``extra=`` and is a field.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class JsonLinesFormatter(_LineFormatter):
    """One JSON object per line: time, level, logger, message, request_id, then the
    ``extra`` fields (the access log's method, path, status, duration_ms, client)."""

    DATEFMT = "%Y-%m-%dT%H:%M:%S%z"

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, self.DATEFMT),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                data[key] = value
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)

    def line(
        self, created: float, level: str, name: str, request_id: str, message: str,
        fields: dict[str, Any],
    ) -> str:  # fmt: skip
        data = {
            "time": self._time(created, self.DATEFMT),
            "level": level,
            "logger": name,
            "message": message,
            "request_id": request_id,
            **fields,
        }
        return json.dumps(data, ensure_ascii=False, default=str)


class BatchedStreamHandler(logging.StreamHandler[IO[str]]):
    """Writes lines in batches: one write for many lines, not one per line.

    A batch goes out when it has ``size`` lines, when a warning or worse arrives, every
    ``interval`` seconds (a background thread), and when logging shuts down at exit.
    """

    def __init__(self, stream: IO[str], interval: float = 0.2, size: int = 256) -> None:
        super().__init__(stream)
        self.size = size
        self._lines: list[str] = []
        self._stopped = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_every, args=(interval,), name="log-flusher", daemon=True
        )
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            self._lines.append(self.format(record))
            if record.levelno >= logging.WARNING or len(self._lines) >= self.size:
                self._write()
        except Exception:
            self.handleError(record)

    def add_line(self, line: str) -> None:
        """A line made without a record (``_LineFormatter.line``), batched like the rest."""
        with self.lock:  # type: ignore[union-attr]  # made in Handler.__init__
            self._lines.append(line)
            if len(self._lines) >= self.size:
                self._write()

    def _write(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # made in Handler.__init__
            try:
                self._write()
            except (OSError, ValueError):  # the stream is gone (closed at exit)
                self._lines.clear()

    def _flush_every(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()


def fast_line_handler(logger: logging.Logger) -> BatchedStreamHandler | None:
    """The handler an INFO line of ``logger`` can go to straight away, as a line: when the
    only handler on its way is the server's batched one, with its own filter and format.

    Anywhere else (another handler added, a filter, a test capturing records) the line
    must be a record, and this is None.
    """
    current: logging.Logger | None = logger
    while current is not None and current is not logging.root:
        if current.handlers or current.filters or current.disabled:
            return None
        current = current.parent if current.propagate else None
    if current is None or current.filters:
        return None
    handlers = current.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (
        type(handler) is not BatchedStreamHandler
        or handler.level > logging.INFO
        or len(handler.filters) != 1
        or not isinstance(handler.formatter, _LineFormatter)
    ):
        return None
    return handler


def info_line(logger: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """Log ``message`` at INFO with ``fields`` (as ``extra``), under the current request's
    id; as a ready-made line when ``fast_line_handler`` allows (a few microseconds, not
    the tens a record takes), else as a record. The output is the same either way."""
    handler = fast_line_handler(logger)
    if handler is None:
        logger.info("%s", message, extra=fields)
        return
    formatter = handler.formatter
    assert isinstance(formatter, _LineFormatter)
    request_id = request_id_var.get() or "-"
    handler.add_line(formatter.line(time.time(), "INFO", logger.name, request_id, message, fields))


def _formatter(fmt: str) -> logging.Formatter:
    return JsonLinesFormatter() if fmt == "json" else TextFormatter()


def configure_logging(level: str, fmt: str = "text", *, batched: bool = False) -> None:
    """Log to stderr at ``level`` as ``fmt`` (text or json); ``batched`` for servers."""
    # Records need not find their caller, thread or process: no format shows them.
    logging._srcfile = None  # the documented way to skip it (logging HOWTO, Optimization)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler: logging.Handler = (
        BatchedStreamHandler(sys.stderr) if batched else logging.StreamHandler(sys.stderr)
    )
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(_formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    silence_server_access_log()


def silence_server_access_log() -> None:
    """uvicorn's access log prints full paths, link tokens included; ours redacts them."""
    logging.getLogger("uvicorn.access").disabled = True
