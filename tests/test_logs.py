"""Log lines: the same whether made from a record or straight away (the access log's fast
path), written in batches by the server, and never lost at exit."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from service.logs import (
    BatchedStreamHandler,
    configure_logging,
    fast_line_handler,
    info_line,
    request_id_var,
)

FIELDS = {
    "method": "GET",
    "path": "/api/v1/lists/daily/widget",
    "status": 200,
    "duration_ms": 1.23,
    "client": "127.0.0.1",
}


@pytest.fixture
def server_logging() -> Iterator[BatchedStreamHandler]:
    """Logging as ``newsletter serve`` sets it up, into a string; put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO", "text", batched=True)
    handler = root.handlers[0]
    assert isinstance(handler, BatchedStreamHandler)
    handler.setStream(io.StringIO())
    yield handler
    handler.close()
    root.handlers[:], root.level = saved


def written(handler: BatchedStreamHandler) -> list[str]:
    handler.flush()
    stream = handler.stream
    assert isinstance(stream, io.StringIO)
    return stream.getvalue().splitlines()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_line_made_straight_away_is_the_line_a_record_makes(
    server_logging: BatchedStreamHandler, fmt: str
) -> None:
    configure_logging("INFO", fmt, batched=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, BatchedStreamHandler)
    handler.setStream(io.StringIO())
    access = logging.getLogger("service.access")
    token = request_id_var.set("req-ü-1")
    try:
        assert fast_line_handler(access) is handler
        info_line(access, "GET /api/v1/lists/daily/widget 200 1.2ms", FIELDS)
        access.info("GET /api/v1/lists/daily/widget 200 1.2ms", extra=FIELDS)
    finally:
        request_id_var.reset(token)
    fast, record = written(handler)
    if fmt == "json":
        fast_data, record_data = json.loads(fast), json.loads(record)
        assert fast_data.keys() == record_data.keys()
        assert {k: v for k, v in fast_data.items() if k != "time"} == {
            k: v for k, v in record_data.items() if k != "time"
        }
        assert fast_data["request_id"] == "req-ü-1" and fast_data["status"] == 200
    else:
        # Equal but for the milliseconds of the time stamp.
        assert fast.split(" ", 2)[2] == record.split(" ", 2)[2]
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ", fast), fast
        assert "INFO    service.access [req-ü-1] GET /api/v1/lists/daily/widget 200" in fast
    handler.close()


def test_a_capturing_handler_gets_records_not_lines(
    server_logging: BatchedStreamHandler, caplog: pytest.LogCaptureFixture
) -> None:
    access = logging.getLogger("service.access")
    with caplog.at_level(logging.INFO):
        assert fast_line_handler(access) is None
        info_line(access, "GET / 200 0.5ms", FIELDS)
    [record] = [r for r in caplog.records if r.name == "service.access"]
    assert record.getMessage() == "GET / 200 0.5ms"
    assert record.__dict__["status"] == 200


def test_lines_wait_for_a_batch_but_warnings_and_exit_do_not(
    server_logging: BatchedStreamHandler,
) -> None:
    log = logging.getLogger("service.test")
    log.info("first")
    log.info("second")
    stream = server_logging.stream
    assert isinstance(stream, io.StringIO)
    assert stream.getvalue() == ""  # batched: not written yet
    log.warning("a warning")
    assert [line.rsplit(" ", 1)[1] for line in stream.getvalue().splitlines()] == [
        "first",
        "second",
        "warning",
    ]
    log.info("last words")
    server_logging.close()  # as logging does at exit
    assert stream.getvalue().splitlines()[-1].endswith("last words")


def test_a_full_batch_is_written_at_once(server_logging: BatchedStreamHandler) -> None:
    log = logging.getLogger("service.test")
    for n in range(server_logging.size):
        log.info("line %d", n)
    stream = server_logging.stream
    assert isinstance(stream, io.StringIO)
    assert len(stream.getvalue().splitlines()) == server_logging.size
