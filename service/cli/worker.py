"""``newsletter worker``: a process that acts on signups taken in and sends queued mail.

Run any number of them next to ``newsletter serve`` processes (which can leave sending
to them with ``NEWSLETTER_RUN_WORKER=false``). SIGTERM or SIGINT stops taking new mail,
finishes the messages being sent, hands the rest of the batch back and exits 0; a second
signal stops at once, and what was in hand is sent by another worker after its lease.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import TYPE_CHECKING, Any

from service.cli._common import run_with_db
from service.settings import Settings

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["register"]

log = logging.getLogger("service.worker")


async def _work(settings: Settings, db: Database) -> int:
    import asyncio

    from service.components import assemble
    from service.metrics import Metrics
    from service.templating import make_environment

    parts = await assemble(settings, db, make_environment(), Metrics())
    worker, mailer = parts.worker, parts.mailer
    task = asyncio.create_task(worker.run(), name="outbox-worker")
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: finishing the mail in hand, then stopping", signal.Signals(signum).name)
            worker.stop()
        else:
            log.warning("second signal: stopping now")
            task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await task
    except asyncio.CancelledError:
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await mailer.close()
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    for name in settings.unknown_variables:
        log.warning("unknown setting %s is ignored (a typo?)", name)
    log.info(
        "worker: %s sends at once, lease %ss",
        settings.worker_concurrency,
        settings.worker_lease,
    )
    return run_with_db(settings, lambda db: _work(settings, db))


def register(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="act on signups and send queued mail (run any number next to the web service)",
        description="Act on the signups the web service took in and send the mail queued in "
        "the outbox; no web server. Any number of workers can run at once, on any machine "
        "that reaches the database; each claims messages with a lease, so two workers never "
        "send the same message. SIGTERM or SIGINT finishes the messages being sent and exits.",
    )
    worker.set_defaults(handler=_worker)
