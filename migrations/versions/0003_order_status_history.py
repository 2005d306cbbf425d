"""Order status history: one row per change of an order's status or filled quantity.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from om_core.db.types import DecimalType, UTCDateTime

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "order_status_history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("client_order_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("filled_qty", DecimalType(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_order_status_history_client_order_id",
        "order_status_history",
        ["client_order_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_order_status_history_client_order_id", table_name="order_status_history")
    op.drop_table("order_status_history")
