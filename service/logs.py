"""Logging set-up for the command line and the server."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging", "silence_server_access_log"]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    silence_server_access_log()


def silence_server_access_log() -> None:
    """uvicorn's access log prints full paths, link tokens included; ours redacts them."""
    logging.getLogger("uvicorn.access").disabled = True
