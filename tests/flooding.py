"""A signup flood from outside, over real sockets: for tests/test_flood_browser.py and
bench/flood_bench.py.

Two kinds of bots, each request from another client address (``X-Forwarded-For``, through
a trusted proxy):

- stampers fetch a fresh form stamp for every signup, wait as long as a person would fill
  in the form, and send it without any proof of work (what a form stamp alone let through);
- payers solve every proof of work they are asked for, in a solver process of their own
  (SHA-256 with the challenge's prefix hashed once, as fast as Python goes), and count the
  hashes that took.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

__all__ = ["Flood", "Sent"]

# The solver process: a challenge and a difficulty per line in, the first solution out.
SOLVER = """
import hashlib, sys
for line in sys.stdin:
    challenge, bits = line.split()
    shift, prefix, n = 256 - int(bits), hashlib.sha256((challenge + ":").encode()), 0
    while True:
        h = prefix.copy()
        h.update(str(n).encode())
        if int.from_bytes(h.digest()) >> shift == 0:
            break
        n += 1
    print(n, flush=True)
"""


@dataclass(frozen=True)
class Sent:
    """One signup the flood sent: when, how it was answered, what work it carried."""

    at: float
    status: int
    error: str
    difficulty: int  # of the proof of work it carried; 0: none
    email: str


@dataclass
class Flood:
    """Bots sending signups to one list until stopped; what they sent and the work done."""

    url: str
    slug: str
    stampers: int = 20
    payers: int = 1
    fill_time: float = 0.5  # how long a stamper waits before sending, as a person types
    victim_every: int = 10  # one signup in this many is for the victim's inbox
    addresses: int = 1000
    sent: list[Sent] = field(default_factory=list)
    hashes: int = 0  # the payers' work, in SHA-256 computations
    solved: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _count: itertools.count[int] = field(default_factory=itertools.count)

    def _next(self) -> tuple[dict[str, str], str]:
        n = next(self._count)
        ip = f"81.{n % self.addresses // 250}.{n % 250}.{n % 7 + 1}"
        victim = ("victim@gmail.com", "Victim@Gmail.com", f"v.i.c.t.i.m+{n}@gmail.com")[n % 3]
        email = victim if n % self.victim_every == 0 else f"bot{n}@example.net"
        return {"X-Forwarded-For": ip}, email

    async def run(self) -> None:
        """Flood until ``stop()``."""
        limits = httpx.Limits(max_connections=self.stampers + self.payers + 4)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as client:
            bots = [self._stamper(client) for _ in range(self.stampers)]
            bots += [self._payer(client) for _ in range(self.payers)]
            await asyncio.gather(*bots)

    def stop(self) -> None:
        self._stop.set()

    async def _post(
        self, client: httpx.AsyncClient, headers: dict[str, str], fields: dict[str, str]
    ) -> httpx.Response:
        path = f"/api/v1/lists/{self.slug}/subscriptions"
        try:
            return await client.post(path, data=fields, headers=headers)
        except httpx.TransportError:  # a kept-alive connection the server closed: once more
            return await client.post(path, data=fields, headers=headers)

    async def _challenge(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> dict[str, object]:
        path = f"/api/v1/lists/{self.slug}/challenge"
        try:
            reply = await client.get(path, headers=headers)
        except httpx.TransportError:  # as above
            reply = await client.get(path, headers=headers)
        body: dict[str, object] = reply.json()
        return body

    async def _stamper(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            headers, email = self._next()
            stamp = str((await self._challenge(client, headers))["form_stamp"])
            await asyncio.sleep(self.fill_time)
            reply = await self._post(client, headers, {"email": email, "form_stamp": stamp})
            self._record(reply, 0, email)

    async def _payer(self, client: httpx.AsyncClient) -> None:
        solver = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SOLVER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert solver.stdin is not None and solver.stdout is not None
        try:
            while not self._stop.is_set():
                headers, email = self._next()
                body = await self._challenge(client, headers)
                challenge, bits = str(body["challenge"]), int(str(body["difficulty"]))
                solver.stdin.write(f"{challenge} {bits}\n".encode())
                await solver.stdin.drain()
                solution = (await solver.stdout.readline()).decode().strip()
                self.hashes += int(solution) + 1
                self.solved += 1
                fields = {"email": email, "form_stamp": str(body["form_stamp"])}
                fields.update(pow_challenge=challenge, pow_solution=solution)
                self._record(await self._post(client, headers, fields), bits, email)
        finally:
            solver.kill()
            await solver.wait()

    def _record(self, reply: httpx.Response, difficulty: int, email: str) -> None:
        error = "" if reply.status_code == 202 else str(reply.json().get("error", ""))
        self.sent.append(Sent(time.monotonic(), reply.status_code, error, difficulty, email))

    def answers(self) -> Counter[tuple[int, str]]:
        return Counter((s.status, s.error) for s in self.sent)

    def accepted(self, *, paid: bool) -> list[Sent]:
        return [s for s in self.sent if s.status == 202 and bool(s.difficulty) == paid]
