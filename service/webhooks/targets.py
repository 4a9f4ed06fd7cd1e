"""Which URLs a webhook may call: no server-side request forgery.

A URL must be http(s) with a host. Its host's addresses must all be public, unless
``NEWSLETTER_WEBHOOK_ALLOW_PRIVATE`` is on: loopback, private, link-local (cloud metadata
services live there), multicast, reserved and unspecified addresses are refused. The
check runs when an endpoint is saved and again before every delivery, since a name can
resolve elsewhere later; redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["UnsafeTarget", "check_address", "check_url", "lookup", "resolve"]


class UnsafeTarget(ValueError):
    """The URL is not one a webhook may call; the message says why."""


def check_url(url: str) -> str:
    """The URL, stripped, if its form is acceptable; else `UnsafeTarget`."""
    url = url.strip()
    if len(url) > 2048:
        raise UnsafeTarget("The URL is longer than 2048 characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise UnsafeTarget(f"{url!r} is not a URL.") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnsafeTarget("The URL must start with https:// (or http://) and name a host.")
    if parts.username or parts.password:
        raise UnsafeTarget("The URL must not carry a user name or password.")
    return url


def check_address(address: str, *, allow_private: bool) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private:
        return
    if not ip.is_global or ip.is_multicast:
        raise UnsafeTarget(
            f"The URL's host is at {ip}, a loopback, private or reserved address; webhooks "
            "go to public addresses only (NEWSLETTER_WEBHOOK_ALLOW_PRIVATE allows others)."
        )


async def lookup(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in found]


async def resolve(url: str, *, allow_private: bool, unresolved_ok: bool = False) -> None:
    """Check the URL's form and every address its host resolves to. ``unresolved_ok``:
    a name that does not resolve now passes (when saving: delivery checks again)."""
    parts = urlsplit(check_url(url))
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await lookup(host, port)
    except OSError as exc:
        if unresolved_ok:
            return
        raise UnsafeTarget(f"The URL's host {host!r} cannot be resolved ({exc}).") from None
    for address in found:
        check_address(address, allow_private=allow_private)
