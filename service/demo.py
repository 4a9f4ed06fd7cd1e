"""``newsletter demo``: the whole flow on one machine in a minute.

Runs the service with the development mail catcher and a fresh database, creates a demo
list, and serves a sample article page from a second port (another origin, as a real news
site would be) with the one-line snippet embedded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import tempfile
from pathlib import Path

from markupsafe import Markup

from service.db import Database
from service.lists import create_list, update_list
from service.loopback import LoopbackServer, QuietHandler
from service.settings import Settings
from service.templating import make_environment
from service.web.assets import snippet
from service.webhooks import endpoints
from service.webhooks.events import EVENT_TYPES
from service.webhooks.receiver import DemoReceiver

__all__ = ["ArticleServer", "render_article", "run_demo"]

PARAGRAPHS = [
    "After two years of debate, the city council voted on Tuesday evening to turn the old "
    "freight yard along the river into a public park, with a playground, a swimming "
    "platform and a cycle path that links the two bridges.",
    "The plan passed with a large majority. Supporters pointed to the lack of green space "
    "in the dense neighbourhoods on the east bank, where most homes have no garden.",
    "Opponents worried about the cost of cleaning the soil, which a survey found to contain "
    "traces of oil from the decades when trains were refuelled on the site.",
    "The city expects the first part of the park to open next summer. Residents are invited "
    "to a planning workshop next month to help choose the trees and the playground design.",
    "Local businesses along the river welcomed the decision. A café owner said the park "
    "would bring families to a street that is empty after office hours.",
    "The budget includes money for lighting and public toilets, two requests that came up "
    "again and again in the consultation last spring.",
    "Construction is planned in three phases so that the cycle path can open first, before "
    "the rest of the site is finished.",
]


def render_article(widget_snippet: str, *, extra_head: str = "", inline: bool = False) -> str:
    """A plain article page with the snippet; tests add hostile CSS through ``extra_head``."""
    template = make_environment().get_template("demo/article.html")
    return template.render(
        snippet=Markup(widget_snippet),  # noqa: S704 - our own snippet
        extra_head=Markup(extra_head),  # noqa: S704 - set by the demo or a test, never a reader
        paragraphs=PARAGRAPHS * 3,
        inline=inline,
    )


class ArticleServer(LoopbackServer):
    """Serves one HTML page on 127.0.0.1 from a thread: a news site on another origin."""

    def __init__(self, html: str, port: int = 0) -> None:
        body = html.encode()

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self.send_page(body)

        super().__init__(Handler, port)


async def _prepare(
    settings: Settings, article_origin: str, receiver: DemoReceiver | None = None
) -> None:
    db = Database.from_url(settings.database_url)
    try:
        await db.migrate()
        await create_list(
            db,
            slug="demo",
            name="The Daily Demo",
            origins=[article_origin, article_origin.replace("127.0.0.1", "localhost")],
        )
        await update_list(db, "demo", {"trigger": "delay", "delay": "3", "nameField": "true"})
        if receiver is not None:
            added = await endpoints.add(
                db,
                f"{receiver.url}/hooks",
                event_types=list(EVENT_TYPES),
                description="the demo's receiver",
                allow_private=True,
            )
            receiver.secret = added.secret
    finally:
        await db.dispose()


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def run_demo(
    settings: Settings, port: int, article_port: int, receiver_port: int | None = None
) -> int:

    from service.app import create_app
    from service.server import serve

    if port == article_port:
        print(
            f"newsletter demo: --port and --article-port are both {port}; choose two ports",
            file=sys.stderr,
        )
        return 1
    ports = [(port, "--port"), (article_port, "--article-port")]
    if receiver_port:
        ports.append((receiver_port, "--webhook-receiver"))
    for taken, option in ports:
        if port_in_use(taken):
            print(
                f"newsletter demo: port {taken} is in use; choose another with {option}",
                file=sys.stderr,
            )
            return 1
    base_url = f"http://127.0.0.1:{port}"
    # The demo's data lives as long as the demo: the folder goes when it stops.
    with tempfile.TemporaryDirectory(prefix="newsletter-demo-") as name:
        folder = Path(name)
        settings = settings.replace(
            database_url=f"sqlite+aiosqlite:///{folder / 'demo.db'}",
            base_url=base_url,
            smtp_host="",
            run_worker=True,
            webhook_allow_private=receiver_port is not None,  # the receiver is on loopback
        )
        html = render_article(snippet(base_url, "demo"))
        with contextlib.ExitStack() as stack:
            article = stack.enter_context(ArticleServer(html, article_port))
            receiver = (
                stack.enter_context(DemoReceiver(receiver_port))
                if receiver_port is not None
                else None
            )
            asyncio.run(_prepare(settings, article.url, receiver))
            if receiver is not None:
                print(
                    f"\n  Webhooks go to {receiver.url}/hooks (signed; shown here and at "
                    f"{receiver.url}/ as they arrive)",
                    flush=True,
                )
            print(
                "\n  Newsletter demo\n"
                f"  1. Open the article:       {article.url}/   (the box slides in after 3 s)\n"
                f"  2. Read the caught mail:   {base_url}/dev/mail\n"
                f"  Hosted signup page:        {base_url}/subscribe/demo\n"
                "  Press Ctrl+C to stop (the demo's data goes with it).\n",
                flush=True,
            )
            serve(create_app(settings), "127.0.0.1", port)
    return 0
