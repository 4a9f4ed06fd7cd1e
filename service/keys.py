"""The key that signs links: from NEWSLETTER_SECRET_KEY, or generated once and stored.

The stored fallback lets the service run with no configuration at all and keeps links
valid across restarts and between processes sharing the database. Anyone who can read the
database can then forge links, which is why production sets the variable.
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import select

from service.db import Database, insert_or_ignore
from service.models import Meta
from service.settings import Settings

__all__ = ["signing_key"]

log = logging.getLogger(__name__)

_KEY = "generated_secret_key"


async def signing_key(settings: Settings, db: Database) -> str:
    if settings.secret_key:
        return settings.secret_key.reveal()
    # Read first: a process started on a database that takes no writes (read-only, disk
    # full) still starts, and says so in /readyz, once the key exists.
    async with db.read() as session:
        value = await session.scalar(select(Meta.value).where(Meta.key == _KEY))
    if value is None:
        async with db.write() as session:
            await session.execute(
                insert_or_ignore(db, Meta).values(key=_KEY, value=secrets.token_urlsafe(48))
            )
            value = await session.scalar(select(Meta.value).where(Meta.key == _KEY))
    log.warning(
        "NEWSLETTER_SECRET_KEY is not set: links are signed with a key generated and stored "
        "in the database. Set NEWSLETTER_SECRET_KEY in production."
    )
    assert value is not None
    return value
