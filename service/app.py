"""The application factory. The lifespan owns the database, the mailer and the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.templating import Jinja2Templates
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service.components import assemble
from service.db import Database, SchemaError
from service.lists import ListCache
from service.mail import Mailer
from service.metrics import Metrics
from service.settings import Settings
from service.state import AppState
from service.templating import make_environment
from service.web import api, devmail, events, health, hosted, openapi, pages, widget, widget_parts
from service.web import metrics as metrics_routes
from service.web.admin import api as admin_api
from service.web.admin import blocklist as admin_blocklist
from service.web.admin import box as admin_box
from service.web.admin import box_tests as admin_box_tests
from service.web.admin import data as admin_data
from service.web.admin import pages as admin_pages
from service.web.admin import people as admin_people
from service.web.admin import security as admin_security
from service.web.admin import security_api as admin_security_api
from service.web.admin import signin
from service.web.admin import webhooks as admin_webhooks
from service.web.admin import welcome as admin_welcome
from service.web.admin.data import body_limit
from service.web.middleware import (
    AccessLogMiddleware,
    BodyLimitMiddleware,
    SecurityHeadersMiddleware,
)
from service.web.refusals import exception_handlers
from service.web.routing import merged
from service.web.slashes import relative_slash_redirects

__all__ = ["create_app"]

log = logging.getLogger(__name__)

WORKER_SHUTDOWN_GRACE = 30.0


def create_app(settings: Settings) -> Starlette:
    env = make_environment()
    templates = Jinja2Templates(env=env)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        db = Database.from_url(settings.database_url)
        worker_task: asyncio.Task[None] | None = None
        probe: asyncio.Task[None] | None = None
        counting: asyncio.Task[None] | None = None
        mailer: Mailer | None = None
        lists = ListCache(db, settings.list_cache_ttl)
        try:
            try:
                await db.prepare_schema(migrate=settings.migrates_on_start)
            except SchemaError as exc:
                log.error("cannot start: %s", exc)
                raise
            parts = await assemble(settings, db, env, metrics)
            mailer, worker = parts.mailer, parts.worker
            # What the relay offers decides which addresses a signup may give.
            probe = asyncio.create_task(mailer.probe(), name="smtp-probe")
            box_counter = parts.box_counter
            counting = asyncio.create_task(
                box_counter.run(settings.box_flush_interval), name="box-counts"
            )
            if settings.run_worker:
                worker_task = asyncio.create_task(worker.run(), name="outbox-worker")
            state: AppState = {
                "settings": settings,
                "lists": lists,
                "db": db,
                "emails": parts.emails,
                "subscriptions": parts.subscriptions,
                "intake": parts.intake,
                "signups": parts.signups,
                "stamps": parts.stamps,
                "challenges": parts.challenges,
                "worker": worker,
                "templates": templates,
                "metrics": metrics,
                "box_counter": box_counter,
            }
            yield state
            counting.cancel()
            try:
                await box_counter.flush()  # what was counted since the last write
            except Exception:
                log.exception("box counts lost at shutdown")
            if worker_task is not None:
                worker.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(worker_task), WORKER_SHUTDOWN_GRACE)
                except TimeoutError:
                    log.warning("outbox worker did not stop in time; cancelling it")
        finally:
            for task in (probe, worker_task, counting):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if mailer is not None:
                await mailer.close()
            await lists.close()
            await db.dispose()

    routes: list[BaseRoute] = [
        *widget.routes,  # first: the router tries routes in order, and every page view asks
        *api.routes,
        *health.routes,
        *metrics_routes.routes,
        *events.routes,
        *openapi.routes,
        *widget_parts.routes,
        *pages.routes,
        *hosted.routes,
        *signin.routes,
        *admin_people.routes,  # before admin_pages: /admin/subscribers/new is no id
        *admin_pages.routes,
        *admin_api.routes,
        *admin_data.routes,
        *admin_security.routes,
        *admin_security_api.routes,
        *admin_blocklist.routes,
        *admin_webhooks.routes,
        *admin_welcome.routes,
        *admin_box.routes,
        *admin_box_tests.routes,
    ]
    if settings.uses_mail_catcher:
        routes += devmail.routes
    middleware = [
        Middleware(AccessLogMiddleware, metrics=metrics),
        Middleware(SecurityHeadersMiddleware, https=settings.base_url.startswith("https://")),
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, per_path=body_limit),
    ]
    # The box's events: before the rest of the stack, as cheap as a bare endpoint.
    middleware.insert(0, Middleware(events.BoxEventsLane))
    if settings.trusted_proxies:
        # Outermost, so the access log, rate limits and consent records see the reader's
        # address rather than the proxy's.
        middleware.insert(
            0, Middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
        )
    app = Starlette(
        routes=merged(routes),
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    relative_slash_redirects(app.router)
    return app
