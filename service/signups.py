"""Taking a signup: the one use case behind the box, the hosted page and the API.

``Signups.take`` holds every rule a signup passes on its way in, in order: the fields are
valid, the consent box is ticked where the list asks for it, the proof of work is solved
where the list asks for it or a flood makes it (``service.surge``), and neither the client
nor the list is over its rate limit.
It either returns (the signup is stored for the worker: answer 202) or raises a
``Refusal`` that says what is wrong. How the answer looks is the web layer's business.

A signup that looks like a bot's (the honeypot) is taken in like any other and dropped by
the worker, so the answer never tells a bot it was caught, nor anyone whether an address
is known (``service.intake``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from service import bots
from service.box_counts import BoxCounter, list_variants, signup_source
from service.challenges import Challenge, ChallengeRefused, Challenges, spend
from service.db import Database
from service.errors import Refusal
from service.intake import Intake
from service.mail import Mailer
from service.metrics import Metrics
from service.models import MailingList
from service.settings import Settings
from service.subscriptions import RequestOrigin
from service.surge import Surge, least
from service.validation import FIX_FIELDS, FieldErrors, validate_signup
from service.widget_settings import setting

__all__ = ["CONSENT_MISSING", "SURGING", "TICKED", "UNPROVEN", "Asked", "Signups", "TooMany"]

log = logging.getLogger(__name__)

CONSENT_MISSING = "must be given: this list asks readers to tick the consent box"
UNDELIVERABLE_LOCAL = (
    "has characters before the @ that our mail server cannot deliver to: please use another address"
)
UNPROVEN = (
    "This signup came without a good form stamp (none, not ours, too old or used already), "
    "or sooner than a person fills in the form: solve a small puzzle first (proof of work). "
    "Fetch a challenge from GET /api/v1/lists/{slug}/challenge and send pow_challenge and "
    "pow_solution with the signup."
)
SURGING = (
    "This list is taking signups very fast right now, so each one must solve a small puzzle "
    "first (proof of work). Fetch a challenge from GET /api/v1/lists/{slug}/challenge and "
    "send pow_challenge and pow_solution with the signup."
)
TICKED = ("yes", "true", "on", "1")  # what a ticked consent box may send


@dataclass(frozen=True)
class Asked:
    """A challenge for a client, and whether its signup must pay it (``required``)."""

    challenge: Challenge
    required: bool


class TooMany(Refusal):
    """Over a rate limit: the client's or the list's."""

    status = 429

    def __init__(self, retry_after: float, scope: str) -> None:
        minutes = max(1, round(retry_after / 60))
        who = "from your network" if scope == "client" else "to this list"
        super().__init__(
            f"Too many signups {who} right now. Please try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}.",
            retry_after=retry_after,
        )
        self.scope = scope


class Signups:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        stamps: bots.FormStamps,
        challenges: Challenges,
        intake: Intake,
        metrics: Metrics,
        mailer: Mailer,
        box_counter: BoxCounter | None = None,
    ) -> None:
        self._box_counter = box_counter
        self._settings = settings
        self._db = db
        self._stamps = stamps
        self._challenges = challenges
        self._intake = intake
        self._metrics = metrics
        self._mailer = mailer  # knows whether the relay takes non-ASCII local parts
        self._surge = Surge(db, settings)

    async def take(
        self, mailing_list: MailingList, fields: Mapping[str, Any], origin: RequestOrigin
    ) -> None:
        """Store the signup for the worker, or raise the Refusal that says why not."""
        slug = mailing_list.slug
        signup = validate_signup(fields, check_deliverability=self._settings.check_deliverability)
        local = signup.email.rpartition("@")[0]
        if not local.isascii() and self._mailer.smtputf8 is False:
            raise FieldErrors({"email": UNDELIVERABLE_LOCAL})
        verdict = "honeypot" if bots.trapped(fields) else ""
        # Where the box was, when it counts (it sends nothing under Do Not Track or GPC).
        where = signup_source(fields.get("box"), signup.page_url, list_variants(mailing_list))
        if where is not None:
            signup = replace(signup, box_source=where.encode())
        ticked = str(fields.get("consent", "")).lower() in TICKED
        if not verdict and setting(mailing_list, "consentCheckbox") and not ticked:
            raise Refusal(FIX_FIELDS, status=422, fields={"consent": CONSENT_MISSING})
        suspect, stamp = ("", None) if verdict else self._suspicion(fields, slug)
        # Under a flood every signup pays, at the level in force, stamp or not.
        surge = await self._surge.difficulty(mailing_list.id, origin.ip)
        if surge or suspect or setting(mailing_list, "proofOfWork") or fields.get("pow_solution"):
            await self._pay(slug, fields, suspect or ("surge" if surge else ""), surge)
            stamp = None  # the work is proof enough: the stamp need not be spent
        # The same work for every address and every verdict: what differs happens later.
        refused = await self._intake.take(
            mailing_list, signup, origin, verdict=verdict, stamp=stamp
        )
        if refused is not None and refused.scope == "stamp":
            self._metrics.signups_challenged.labels("reused-stamp").inc()
            raise ChallengeRefused(UNPROVEN.format(slug=slug), missing=True, suspect="reused-stamp")
        if refused is not None:
            raise TooMany(refused.retry_after, refused.scope)
        if verdict:
            log.info("signup on list %s is a bot's (%s); dropped", slug, verdict)
            self._metrics.signups_dropped.labels(verdict).inc()
        else:
            self._metrics.subscribes.labels(slug).inc()
            if where is not None and self._box_counter is not None:
                self._box_counter.add(mailing_list.id, "accepted", where)

    def _suspicion(self, fields: Mapping[str, Any], slug: str) -> tuple[str, bots.Stamp | None]:
        return bots.suspicion(
            fields,
            slug,
            self._stamps,
            self._settings.min_fill_time,
            max_age=self._settings.pow_lifetime,  # a form stamp lives as long as a challenge
        )

    async def challenge(self, mailing_list: MailingList, origin: RequestOrigin) -> Asked:
        """The proof of work to hand a client for its signup on this list now."""
        surge = await self._surge.difficulty(mailing_list.id, origin.ip)
        made = self._challenges.make(mailing_list.slug, difficulty=surge)
        return Asked(made, bool(surge) or bool(setting(mailing_list, "proofOfWork")))

    async def _pay(self, slug: str, fields: Mapping[str, Any], suspect: str, surge: int) -> None:
        """A valid, unspent proof of work, or the refusal that asks for one."""
        easiest = least(surge, self._settings.pow_difficulty) if surge else 0
        try:
            proof = self._challenges.check(
                slug, fields.get("pow_challenge"), fields.get("pow_solution"), least=easiest
            )
        except ChallengeRefused as refused:
            if suspect and refused.missing:
                self._metrics.signups_challenged.labels(suspect).inc()
                message = (SURGING if suspect == "surge" else UNPROVEN).format(slug=slug)
                raise ChallengeRefused(message, missing=True, suspect=suspect) from None
            raise
        await spend(self._db, proof)
