"""Proof of work: a small puzzle a list can ask every signup to solve first.

No third-party captcha: the service hands out a challenge signed with its key
(``GET /api/v1/lists/SLUG/challenge``), and the signup comes back with a number ``n``
such that ``SHA-256(challenge + ":" + n)`` starts with ``difficulty`` zero bits. A reader's
browser finds it in the background in a fraction of a second; a bot sending thousands of
signups pays that for each one.

A challenge is ``SLUG.EXPIRES.DIFFICULTY.NONCE.SIGNATURE``: bound to one list, valid until
EXPIRES (unix seconds), and good for one signup. The nonce is sized so that
``challenge + ":"`` fills whole 64-byte SHA-256 blocks: a solver hashes those once and then
only the counter's block per try. Spent challenges are remembered in ``used_challenges``
until after they expire (``service.retention`` then deletes them), so a solved challenge
cannot be replayed, not even against another process of the same deployment.

Under a flood the difficulty a signup must pay rises (``service.surge``): a challenge
carries the difficulty it was made at, and a signup is checked against what is asked at
the time it arrives.

A challenge is spent in a transaction of its own, before the signup's rate limits are
counted: a replay is refused without counting against anyone's limit (one solved
challenge replayed from many addresses must not use up a list's limit), at the price of
one more small write per signup on such lists, and of a new challenge after a 429.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.db import Database, insert_or_ignore
from service.errors import Refusal
from service.models import UsedChallenge
from service.signing import Signer

__all__ = [
    "SOLUTION_PATTERN",
    "Challenge",
    "ChallengeRefused",
    "Challenges",
    "Proof",
    "solve",
    "solves",
    "spend",
]

_SHAPE = re.compile(
    r"^([a-z0-9-]{1,64})\.([0-9]{1,12})\.([0-9]{1,2})\.([A-Za-z0-9_-]{16,80})\.([A-Za-z0-9_-]{22})$"
)
SOLUTION_PATTERN = r"^[0-9]{1,16}$"
_SOLUTION = re.compile(SOLUTION_PATTERN)
_ALPHABET = string.ascii_letters + string.digits + "-_"
# Spent challenges are kept this much longer than their lifetime, so that a worker whose
# clock runs ahead of an app server's never forgets one the app server would still take.
CLOCK_MARGIN = timedelta(minutes=5)


class ChallengeRefused(Refusal):
    """No valid proof of work; the message says what is wrong, for the person or the client.

    ``missing``: no solution came at all (a form posted without its script having run).
    ``suspect``: why this signup was asked for one (``service.bots.suspicion``), if it was.
    """

    status = 403
    code = "proof_of_work"

    def __init__(self, message: str, *, missing: bool = False, suspect: str = "") -> None:
        super().__init__(message)
        self.missing = missing
        self.suspect = suspect  # why a list that asks for none asked this signup for one


@dataclass(frozen=True)
class Challenge:
    text: str
    difficulty: int
    expires_at: int  # unix seconds


@dataclass(frozen=True)
class Proof:
    """A checked solution, not yet spent."""

    digest: str
    expires_at: datetime


class Challenges:
    def __init__(self, secret_key: str, difficulty: int, lifetime: float) -> None:
        self._signer = Signer(secret_key, b"newsletter proof of work v1", size=16)
        self.difficulty = difficulty
        self.lifetime = lifetime

    def make(self, slug: str, now: float | None = None, *, difficulty: int = 0) -> Challenge:
        """A challenge for ``slug`` at ``difficulty`` bits (this service's own, if more)."""
        difficulty = max(difficulty, self.difficulty)
        expires = int((time.time() if now is None else now) + self.lifetime)
        head = f"{slug}.{expires}.{difficulty}."
        fixed = len(head) + 1 + 22  # ".SIGNATURE"
        size = -(fixed + 1) % 64  # + ":" ends on a block boundary
        while size < 16:
            size += 64
        nonce = "".join(secrets.choice(_ALPHABET) for _ in range(size))
        body = head + nonce
        return Challenge(f"{body}.{self._signer.sign(body)}", difficulty, expires)

    def check(
        self,
        slug: str,
        challenge: object,
        solution: object,
        now: float | None = None,
        *,
        least: int = 0,
    ) -> Proof:
        """The proof to spend, or ChallengeRefused saying what is wrong. The challenge must
        be of at least ``least`` bits (this service's own, if more)."""
        if not challenge or not solution:
            raise ChallengeRefused(
                "This list asks each signup to solve a small puzzle first (proof of work): "
                "send pow_challenge and pow_solution, with a challenge from "
                f"GET /api/v1/lists/{slug}/challenge.",
                missing=not solution,
            )
        match = _SHAPE.match(challenge) if isinstance(challenge, str) else None
        if match is None or not isinstance(challenge, str):
            raise ChallengeRefused("The proof-of-work challenge is not one this service made.")
        owner, expires, difficulty, _, signature = match.groups()
        body = challenge.rpartition(".")[0]
        if not self._signer.verify(body, signature):
            raise ChallengeRefused("The proof-of-work challenge is not one this service made.")
        if owner != slug:
            raise ChallengeRefused(
                "The proof-of-work challenge was made for another list; fetch one for this list."
            )
        if (time.time() if now is None else now) >= int(expires):
            raise ChallengeRefused("The proof-of-work challenge has expired; fetch a new one.")
        if int(difficulty) < max(least, self.difficulty):
            raise ChallengeRefused(
                "The proof-of-work challenge is easier than this service now asks; fetch a new one."
            )
        if not isinstance(solution, str) or not _SOLUTION.match(solution):
            raise ChallengeRefused("The proof-of-work solution must be a whole number.")
        if not solves(challenge, solution, int(difficulty)):
            raise ChallengeRefused(
                f"The proof-of-work solution is wrong: SHA-256 of the challenge, ':' and the "
                f"solution must start with {difficulty} zero bits."
            )
        return Proof(
            hashlib.sha256(challenge.encode()).hexdigest(),
            datetime.fromtimestamp(int(expires), UTC) + CLOCK_MARGIN,
        )


def solves(challenge: str, solution: str, difficulty: int) -> bool:
    digest = hashlib.sha256(f"{challenge}:{solution}".encode()).digest()
    return int.from_bytes(digest) >> (256 - difficulty) == 0


def solve(challenge: str, difficulty: int) -> str:
    """The first solution (what the widget finds); for tests and scripted clients."""
    n = 0
    while not solves(challenge, str(n), difficulty):
        n += 1
    return str(n)


async def spend(db: Database, proof: Proof) -> None:
    """Remember the challenge as used, or ChallengeRefused if it already was (a replay)."""
    insert = (
        insert_or_ignore(db, UsedChallenge)
        .values(digest=proof.digest, expires_at=proof.expires_at)
        .returning(UsedChallenge.digest)
    )
    async with db.write() as session:
        fresh = (await session.execute(insert)).first() is not None
    if not fresh:
        raise ChallengeRefused("This proof-of-work challenge was used already; fetch a new one.")
