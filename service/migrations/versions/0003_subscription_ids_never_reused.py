"""Subscription ids are never reused on SQLite (AUTOINCREMENT).

A link in an email names its subscription by id. Without AUTOINCREMENT, SQLite gives a new
row the highest id plus one, so after the newest subscription is erased the next one gets
its id, and an old email's link would point at someone else's subscription. PostgreSQL's
sequences never reuse an id: nothing to do there.

Revision ID: 0003
Revises: 0002
Created: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # The copy keeps every id; SQLite then counts on from the highest.
    with op.batch_alter_table(
        "subscriptions", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "subscriptions", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
