"""One route per path, whatever module declares its methods.

Endpoint modules each declare the methods they serve (the admin API reads a person, the
people module edits one); when two declare the same path, Starlette stops at the first and
answers 405 with only its methods in ``Allow``. Merged, a path lists every method it has.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

__all__ = ["merged"]

Endpoint = Callable[[Request], Awaitable[Response]]


def merged(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """``routes`` with the plain routes of one path made one, where the first stood."""
    groups: dict[str, list[Route]] = {}
    for route in routes:
        if isinstance(route, Route) and _plain(route):
            groups.setdefault(route.path, []).append(route)
    result: list[BaseRoute] = []
    for route in routes:
        group = groups.get(route.path) if isinstance(route, Route) and _plain(route) else None
        if group is None or len(group) == 1:
            result.append(route)
        elif group[0] is route:
            result.append(_one(group))
    return result


def _plain(route: Route) -> bool:
    """A route of a path, its methods, and an ``async def`` endpoint."""
    return (
        type(route) is Route and bool(route.methods) and inspect.iscoroutinefunction(route.endpoint)
    )


def _one(group: list[Route]) -> Route:
    handlers: dict[str, Endpoint] = {}
    for route in group:
        for method in route.methods or ():
            handlers.setdefault(method, route.endpoint)

    async def endpoint(request: Request) -> Response:
        return await handlers[request.method](request)

    return Route(group[0].path, endpoint, methods=sorted(handlers), name=group[0].name)
