"""The parts of a running service, wired together once for the server and the worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from jinja2 import Environment

from service.bots import FormStamps
from service.box_counts import BoxCounter
from service.challenges import Challenges
from service.db import Database
from service.emails import Emails
from service.intake import Intake
from service.keys import signing_key
from service.mail import CatcherMailer, EmailRenderer, Mailer, SMTPMailer
from service.metrics import CountingMailer, Metrics
from service.retention import Housekeeping
from service.settings import Settings
from service.signups import Signups
from service.subscriptions import Subscriptions
from service.suppressions import AddressKeys
from service.tokens import TokenSigner
from service.wakeup import Wakeup
from service.webhooks.delivery import WebhookSender
from service.worker import OutboxWorker

__all__ = ["Components", "assemble"]

log = logging.getLogger("service")


@dataclass
class Components:
    emails: Emails
    mailer: Mailer
    worker: OutboxWorker
    subscriptions: Subscriptions
    intake: Intake
    signups: Signups
    stamps: FormStamps
    challenges: Challenges
    box_counter: BoxCounter


async def assemble(
    settings: Settings, db: Database, env: Environment, metrics: Metrics
) -> Components:
    key = await signing_key(settings, db)
    signer = TokenSigner(key)
    emails = Emails(settings, signer, EmailRenderer(env))
    mailer: Mailer
    if settings.uses_mail_catcher:
        log.warning(
            "DEVELOPMENT MAIL CATCHER ON: no NEWSLETTER_SMTP_HOST, so no email leaves "
            "this machine. Read it at %s/dev/mail. Never run production like this.",
            settings.base_url,
        )
        mailer = CatcherMailer(db)
    else:
        mailer = SMTPMailer(settings)

    wakeup = Wakeup()  # the intake and the state machine set it, the worker waits on it
    subscriptions = Subscriptions(db, settings, signer, emails, wakeup, addresses=AddressKeys(key))
    intake = Intake(db, settings, subscriptions, metrics, wakeup)
    worker = OutboxWorker(
        db,
        CountingMailer(mailer, metrics),
        emails,
        settings,
        intake=intake,
        housekeeping=Housekeeping(db, settings),
        wakeup=wakeup,
        metrics=metrics,
        webhooks=WebhookSender(db, settings, metrics, wakeup),
    )
    challenges = Challenges(key, settings.pow_difficulty, settings.pow_lifetime)
    stamps = FormStamps(key)
    box_counter = BoxCounter(db, settings.box_pages_per_day)
    signups = Signups(settings, db, stamps, challenges, intake, metrics, mailer, box_counter)
    return Components(
        emails, mailer, worker, subscriptions, intake, signups, stamps, challenges, box_counter
    )
