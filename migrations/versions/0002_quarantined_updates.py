"""Quarantined exchange reports: refused by the order state machine, kept for inspection.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from om_core.db.types import UTCDateTime

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "quarantined_updates",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("order_id", BIG_ID, nullable=True),
        sa.Column("client_order_id", sa.String(length=64), nullable=True),
        sa.Column("exchange_order_id", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantined_updates_received_at", "quarantined_updates", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_quarantined_updates_received_at", table_name="quarantined_updates")
    op.drop_table("quarantined_updates")
