"""Neutral exchange reports: fee currencies, inferred fills, reason codes, quantity units,
position contributions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa
from alembic import op

from om_core.db.types import DecimalType, UTCDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
EMPTY_JSON = sa.text("'{}'")
_QUANTUM = Decimal("1e-18")


def upgrade() -> None:
    op.add_column(
        "orders", sa.Column("qty_unit", sa.String(16), nullable=False, server_default="base")
    )
    op.add_column("orders", sa.Column("fees", sa.JSON(), nullable=False, server_default=EMPTY_JSON))
    op.add_column("orders", sa.Column("exchange_code", sa.String(64), nullable=True))
    op.add_column("orders", sa.Column("exchange_message", sa.Text(), nullable=True))
    op.add_column(
        "orders",
        sa.Column("awaiting_report", sa.Boolean(), nullable=False, server_default=sa.false()),
    )

    op.add_column("fills", sa.Column("value", DecimalType(), nullable=False, server_default="0"))
    op.add_column(
        "fills", sa.Column("fee_currency", sa.String(16), nullable=False, server_default="")
    )
    op.add_column(
        "fills", sa.Column("fee_settled", DecimalType(), nullable=False, server_default="0")
    )
    op.add_column("fills", sa.Column("is_maker", sa.Boolean(), nullable=True))
    op.add_column("fills", sa.Column("kind", sa.String(16), nullable=False, server_default="trade"))
    op.add_column(
        "fills", sa.Column("inferred", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "fills", sa.Column("sized", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column("fills", sa.Column("contribution_id", BIG_ID, nullable=True))
    op.create_index("ix_fills_contribution_id", "fills", ["contribution_id"])

    op.add_column(
        "positions", sa.Column("fees", sa.JSON(), nullable=False, server_default=EMPTY_JSON)
    )
    op.add_column("positions", sa.Column("contribution_id", BIG_ID, nullable=True))
    op.add_column("positions", sa.Column("synced_at", UTCDateTime(), nullable=True))

    op.create_table(
        "position_contributions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("position_id", BIG_ID, nullable=False),
        sa.Column("order_id", BIG_ID, nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("before_size", DecimalType(), nullable=False),
        sa.Column("before_avg_entry_price", DecimalType(), nullable=False),
        sa.Column("before_realized_pnl", DecimalType(), nullable=False),
        sa.Column("before_fees_paid", DecimalType(), nullable=False),
        sa.Column("before_fees", sa.JSON(), nullable=False),
        sa.Column("qty", DecimalType(), nullable=False),
        sa.Column("value", DecimalType(), nullable=False),
        sa.Column("fees_settled", DecimalType(), nullable=False),
        sa.Column("base_fee", DecimalType(), nullable=False),
        sa.Column("fees", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.ForeignKeyConstraint(["position_id"], ["positions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_position_contributions_order_id", "position_contributions", ["order_id"])
    op.create_index(
        "ix_position_contributions_position_id", "position_contributions", ["position_id"]
    )
    _backfill_fills()


def _backfill_fills() -> None:
    """Existing fills were all in the PnL coin, at their own price: value = qty × price."""
    fills = sa.table(
        "fills",
        sa.column("id", BIG_ID),
        sa.column("qty", DecimalType()),
        sa.column("price", DecimalType()),
        sa.column("fee", DecimalType()),
        sa.column("value", DecimalType()),
        sa.column("fee_settled", DecimalType()),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(fills.c.id, fills.c.qty, fills.c.price, fills.c.fee)).all()
    for fill_id, qty, price, fee in rows:
        conn.execute(
            fills.update()
            .where(fills.c.id == fill_id)
            .values(
                value=(Decimal(qty) * Decimal(price)).quantize(_QUANTUM, ROUND_HALF_EVEN),
                fee_settled=fee,
            )
        )


def downgrade() -> None:
    op.drop_index("ix_position_contributions_position_id", table_name="position_contributions")
    op.drop_index("ix_position_contributions_order_id", table_name="position_contributions")
    op.drop_table("position_contributions")
    with op.batch_alter_table("positions") as batch:
        batch.drop_column("synced_at")
        batch.drop_column("contribution_id")
        batch.drop_column("fees")
    op.drop_index("ix_fills_contribution_id", table_name="fills")
    with op.batch_alter_table("fills") as batch:
        for name in (
            "contribution_id",
            "sized",
            "inferred",
            "kind",
            "is_maker",
            "fee_settled",
            "fee_currency",
            "value",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("orders") as batch:
        for name in ("awaiting_report", "exchange_message", "exchange_code", "fees", "qty_unit"):
            batch.drop_column(name)
