"""Alembic environment: migrations run on the connection the service passes in.

``service.db.schema`` builds the configuration in code and puts a synchronous connection of
the service's own engine in ``config.attributes["connection"]`` (reached through
``AsyncConnection.run_sync``), inside a transaction it commits. Run from a checkout with
the ``alembic`` command (``alembic.ini`` at the repository's root), there is no connection
and this file connects to ``NEWSLETTER_DATABASE_URL`` itself.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from service.models import Base, UTCDateTime

target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Migrations spell out plain SQLAlchemy types, so they never import the models."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine() -> None:
    from service.db import make_engine
    from service.settings import Settings

    engine = make_engine(Settings.from_env().database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():  # `alembic upgrade --sql`: print the SQL instead
    from service.settings import Settings

    context.configure(
        url=Settings.from_env().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (shared := context.config.attributes.get("connection")) is not None:
    run_migrations(shared)
else:
    asyncio.run(run_with_own_engine())
