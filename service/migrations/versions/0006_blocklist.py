"""The admin's blocklist of addresses and domains.

Revision ID: 0006
Revises: 0005
Created: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blocklist",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocklist")),
        sa.UniqueConstraint("value", name=op.f("uq_blocklist_value")),
    )


def downgrade() -> None:
    op.drop_table("blocklist")
