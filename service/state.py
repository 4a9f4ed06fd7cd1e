"""What the lifespan hands to every request (``request.state``)."""

from __future__ import annotations

from typing import TypedDict

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from service.bots import FormStamps
from service.box_counts import BoxCounter
from service.challenges import Challenges
from service.db import Database
from service.emails import Emails
from service.intake import Intake
from service.lists import ListCache
from service.metrics import Metrics
from service.settings import Settings
from service.signups import Signups
from service.subscriptions import Subscriptions
from service.worker import OutboxWorker

__all__ = ["AppRequest", "AppState"]


class AppState(TypedDict):
    settings: Settings
    lists: ListCache
    db: Database
    emails: Emails
    subscriptions: Subscriptions
    intake: Intake
    signups: Signups
    stamps: FormStamps
    challenges: Challenges
    worker: OutboxWorker
    templates: Jinja2Templates
    metrics: Metrics
    box_counter: BoxCounter


AppRequest = Request[AppState]
