"""The subscribe box's counts per list, day, page, variant and device; its A/B tests; and
where a box signup came from, so its confirmation is counted there.

Revision ID: 0008
Revises: 0007
Created: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "box_counts",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("page", sa.String(length=256), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=8), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_box_counts_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "list_id", "day", "page", "variant", "device", "event", name=op.f("pk_box_counts")
        ),
    )
    op.create_table(
        "box_tests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("winner", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_box_tests_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_box_tests")),
    )
    op.create_index(op.f("ix_box_tests_list_id"), "box_tests", ["list_id"], unique=False)
    for table in ("signup_requests", "subscriptions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("box_source", sa.String(length=320), nullable=True))


def downgrade() -> None:
    for table in ("subscriptions", "signup_requests"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("box_source")
    op.drop_index(op.f("ix_box_tests_list_id"), table_name="box_tests")
    op.drop_table("box_tests")
    op.drop_table("box_counts")
