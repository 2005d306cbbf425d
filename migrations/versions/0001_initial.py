"""Initial schema: signals, orders and their links, fills, positions, outbox, trading state.

Written from an autogenerate run against an empty database, then ordered by hand so parents
come before the tables that reference them. Uniqueness the money depends on lives here as
constraints (``signals.signal_id``, ``orders.client_order_id``, ``fills.exec_id``,
``outbox.event_id``, one order per signal leg), not in application code.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from om_core.db.types import DecimalType, UTCDateTime

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", BIG_ID, autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "signals",
        _id(),
        sa.Column("signal_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=True),
        sa.Column("side", sa.String(length=8), nullable=True),
        sa.Column("category", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("signal_created_at", UTCDateTime(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("signal_id"),
    )
    op.create_index("ix_signals_symbol", "signals", ["symbol"])
    op.create_index("ix_signals_status_received", "signals", ["status", "received_at"])

    op.create_table(
        "orders",
        _id(),
        sa.Column("client_order_id", sa.String(length=36), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=64), nullable=True),
        sa.Column("signal_id", sa.String(length=128), nullable=True),
        sa.Column("leg", sa.Integer(), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("time_in_force", sa.String(length=16), nullable=True),
        sa.Column("qty", DecimalType(), nullable=False),
        sa.Column("price", DecimalType(), nullable=True),
        sa.Column("reference_price", DecimalType(), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("position_idx", sa.Integer(), nullable=False),
        sa.Column("take_profit", DecimalType(), nullable=True),
        sa.Column("stop_loss", DecimalType(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("filled_qty", DecimalType(), nullable=False),
        sa.Column("cum_exec_value", DecimalType(), nullable=False),
        sa.Column("cum_fee", DecimalType(), nullable=False),
        sa.Column("avg_fill_price", DecimalType(), nullable=True),
        sa.Column("reject_code", sa.String(length=32), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("is_external", sa.Boolean(), nullable=False),
        sa.Column("submit_attempts", sa.Integer(), nullable=False),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.Column("lookup_misses", sa.Integer(), nullable=False),
        sa.Column("exchange_updated_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_order_id"),
        sa.UniqueConstraint("exchange_order_id"),
    )
    op.create_index("ix_orders_signal_id", "orders", ["signal_id"])
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_index("ix_orders_created_id", "orders", ["created_at", "id"])
    op.create_index("ix_orders_symbol_created", "orders", ["symbol", "created_at"])

    op.create_table(
        "signal_order_relationships",
        _id(),
        sa.Column("signal_id", sa.String(length=128), nullable=False),
        sa.Column("order_id", BIG_ID, nullable=False),
        sa.Column("leg", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id"),
        sa.UniqueConstraint("signal_id", "leg", name="uq_signal_leg"),
    )
    op.create_index(
        "ix_signal_order_relationships_signal_id", "signal_order_relationships", ["signal_id"]
    )

    op.create_table(
        "fills",
        _id(),
        sa.Column("exec_id", sa.String(length=96), nullable=False),
        sa.Column("order_id", BIG_ID, nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("qty", DecimalType(), nullable=False),
        sa.Column("price", DecimalType(), nullable=False),
        sa.Column("fee", DecimalType(), nullable=False),
        sa.Column("executed_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("exec_id"),
    )
    op.create_index("ix_fills_order_id", "fills", ["order_id"])

    op.create_table(
        "positions",
        _id(),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("position_idx", sa.Integer(), nullable=False),
        sa.Column("size", DecimalType(), nullable=False),
        sa.Column("avg_entry_price", DecimalType(), nullable=False),
        sa.Column("realized_pnl", DecimalType(), nullable=False),
        sa.Column("fees_paid", DecimalType(), nullable=False),
        sa.Column("mark_price", DecimalType(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("category", "symbol", "position_idx", name="uq_position"),
    )
    op.create_index("ix_positions_symbol", "positions", ["symbol"])

    op.create_table(
        "position_snapshots",
        _id(),
        sa.Column("position_id", BIG_ID, nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("position_idx", sa.Integer(), nullable=False),
        sa.Column("size", DecimalType(), nullable=False),
        sa.Column("avg_entry_price", DecimalType(), nullable=False),
        sa.Column("realized_pnl", DecimalType(), nullable=False),
        sa.Column("fees_paid", DecimalType(), nullable=False),
        sa.Column("mark_price", DecimalType(), nullable=True),
        sa.Column("unrealized_pnl", DecimalType(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["position_id"], ["positions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_position_snapshots_position_id", "position_snapshots", ["position_id"])
    op.create_index("ix_snapshots_symbol_created", "position_snapshots", ["symbol", "created_at"])

    op.create_table(
        "outbox",
        _id(),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=48), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "id"])

    op.create_table(
        "trading_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes and constraints with it.
    for table in (
        "trading_state",
        "outbox",
        "position_snapshots",
        "positions",
        "fills",
        "signal_order_relationships",
        "orders",
        "signals",
    ):
        op.drop_table(table)
