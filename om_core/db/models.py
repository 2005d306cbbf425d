"""Tables. Uniqueness that money depends on is enforced by the database, not by code."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from om_core.db.types import DecimalType, UTCDateTime, utcnow

__all__ = [
    "CancelRequest",
    "DeadLetterRecord",
    "Fill",
    "Order",
    "OrderStatusChange",
    "OutboxEvent",
    "Position",
    "PositionContribution",
    "PositionSnapshot",
    "QuarantinedUpdate",
    "SignalOrderRelationship",
    "SignalRecord",
    "TradingStateRow",
    "table",
]

# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _pk() -> Any:
    return Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True))


def _money(nullable: bool = False, default: Decimal | None = None) -> Any:
    return Field(
        default=default,
        sa_column=sa.Column(DecimalType(), nullable=nullable),
    )


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=None if nullable else utcnow,
        sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index),
    )


class SignalRecord(SQLModel, table=True):
    """Every signal we saw and its single outcome; ``signal_id`` is the idempotency key."""

    __tablename__ = "signals"
    __table_args__ = (
        sa.Index("ix_signals_status_received", "status", "received_at"),
        # The newest-first listing (GET /api/v1/signals, the console's blotter).
        sa.Index("ix_signals_received_id", "received_at", "id"),
    )

    id: int | None = _pk()
    signal_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False, unique=True))
    symbol: str | None = Field(default=None, sa_column=sa.Column(sa.String(64), index=True))
    side: str | None = Field(default=None, max_length=8)
    category: str | None = Field(default=None, max_length=16)
    #: processing | placed | rejected | dead_lettered
    status: str = Field(max_length=32)
    reasons: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    signal_created_at: datetime | None = _ts(nullable=True)
    received_at: datetime = _ts()
    updated_at: datetime = _ts()


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        sa.Index("ix_orders_created_id", "created_at", "id"),
        sa.Index("ix_orders_symbol_created", "symbol", "created_at"),
        sa.Index("ix_orders_status", "status"),
    )

    id: int | None = _pk()
    #: Our deterministic id, sent as the exchange's client order id; committed before the call.
    client_order_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False, unique=True))
    exchange_order_id: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(64), nullable=True, unique=True)
    )
    signal_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(128), index=True))
    leg: int = 0
    exchange: str = Field(max_length=32)
    category: str = Field(max_length=16)
    symbol: str = Field(max_length=64)
    side: str = Field(max_length=8)
    order_type: str = Field(max_length=16)
    time_in_force: str | None = Field(default=None, max_length=16)
    qty: Decimal = _money()
    #: What ``qty`` counts (``om_plugins.QtyUnit``): base, contracts, or quote for a spot
    #: market buy placed elsewhere by amount to spend. Filled quantities count base/contracts.
    qty_unit: str = Field(default="base", max_length=16)
    price: Decimal | None = _money(nullable=True)
    reference_price: Decimal | None = _money(nullable=True)
    reduce_only: bool = False
    position_idx: int = 0
    take_profit: Decimal | None = _money(nullable=True)
    stop_loss: Decimal | None = _money(nullable=True)
    status: str = Field(max_length=32)
    #: Cumulative, as the exchange reports it (or as its executions add up, when ahead).
    filled_qty: Decimal = _money(default=Decimal(0))
    cum_exec_value: Decimal = _money(default=Decimal(0))
    #: Fees in the instrument's PnL coin, other coins converted at their fill price.
    cum_fee: Decimal = _money(default=Decimal(0))
    #: Fees per currency, ``{"USDT": "0.1", "BTC": "0.000001"}`` (negative = rebate).
    fees: dict[str, str] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    avg_fill_price: Decimal | None = _money(nullable=True)
    #: Why it was rejected or cancelled: neutral ``ReasonCode``, the exchange's code and text.
    reject_code: str | None = Field(default=None, max_length=32)
    reject_reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    exchange_code: str | None = Field(default=None, max_length=64)
    exchange_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    #: An order placed elsewhere, seen only through its executions so far: its quantity may
    #: be unknown (``qty`` 0) and, in hedge mode, which position side it trades, so its
    #: fills wait for the order report to reach a position.
    awaiting_report: bool = False
    #: Placed by hand or by another system on the same account: no signal.
    is_external: bool = False
    submit_attempts: int = 0
    #: When the last create request left for the exchange (drives the resend window).
    submitted_at: datetime | None = _ts(nullable=True)
    #: Definitive "not found" answers since then, while the order is in doubt.
    lookup_misses: int = 0
    #: The exchange's own last update time (ms), to refuse stale updates.
    exchange_updated_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class SignalOrderRelationship(SQLModel, table=True):
    __tablename__ = "signal_order_relationships"
    __table_args__ = (sa.UniqueConstraint("signal_id", "leg", name="uq_signal_leg"),)

    id: int | None = _pk()
    signal_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False, index=True))
    order_id: int = Field(
        sa_column=sa.Column(BigIntPK, sa.ForeignKey("orders.id"), nullable=False, unique=True)
    )
    leg: int = 0
    created_at: datetime = _ts()


class Fill(SQLModel, table=True):
    """One execution; ``exec_id`` makes a fill count once however often it is reported.

    An *inferred* fill stands for what an order report says filled before its executions
    arrived (``exec_id`` ``inferred:<order id>``, at most one per order); the executions
    replace it as they come.
    """

    __tablename__ = "fills"

    id: int | None = _pk()
    exec_id: str = Field(sa_column=sa.Column(sa.String(96), nullable=False, unique=True))
    order_id: int = Field(
        sa_column=sa.Column(BigIntPK, sa.ForeignKey("orders.id"), nullable=False, index=True)
    )
    symbol: str = Field(max_length=64)
    category: str = Field(max_length=16)
    side: str = Field(max_length=8)
    qty: Decimal = _money()
    price: Decimal = _money()
    #: Executed value: quote coin (qty × price), or base coin on inverse contracts.
    value: Decimal = _money(default=Decimal(0))
    #: The fee in its own currency (negative = rebate) and in the PnL coin.
    fee: Decimal = _money(default=Decimal(0))
    fee_currency: str = Field(default="", max_length=16)
    fee_settled: Decimal = _money(default=Decimal(0))
    is_maker: bool | None = None
    kind: str = Field(default="trade", max_length=16)
    inferred: bool = False
    #: Whether it moved its position's size: not when a reconciliation had already set the
    #: position to the exchange's figures, which held it (its fee still counts).
    sized: bool = True
    #: The position contribution it counts in; ``None`` while its position is not known.
    contribution_id: int | None = Field(
        default=None, sa_column=sa.Column(BigIntPK, nullable=True, index=True)
    )
    executed_at: datetime = _ts()
    created_at: datetime = _ts()


class Position(SQLModel, table=True):
    __tablename__ = "positions"
    __table_args__ = (
        sa.UniqueConstraint("category", "symbol", "position_idx", name="uq_position"),
    )

    id: int | None = _pk()
    category: str = Field(max_length=16)
    symbol: str = Field(max_length=64, index=True)
    position_idx: int = 0
    #: Signed: > 0 long, < 0 short.
    size: Decimal = _money(default=Decimal(0))
    avg_entry_price: Decimal = _money(default=Decimal(0))
    realized_pnl: Decimal = _money(default=Decimal(0))
    #: Fees in the PnL coin (base-coin fees converted at their fill price).
    fees_paid: Decimal = _money(default=Decimal(0))
    #: Fees per currency, as paid.
    fees: dict[str, str] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    mark_price: Decimal | None = _money(nullable=True)
    #: The latest contribution: the next fill of its order joins it.
    contribution_id: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, nullable=True))
    #: Reconciliation set the position to the exchange's figures as of this time: fills
    #: executed until then are in them already, and reach the position no more.
    synced_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class PositionContribution(SQLModel, table=True):
    """What one order's fills did to a position, as one aggregate.

    A position is the fold of its contributions: each starts from the position as it was
    (``before_*``) and applies the order's fills as one trade of ``qty`` for ``value``. While
    an order's contribution is the position's latest, its later fills join it and the
    position is recomputed from ``before_*``, so the order's fills give the same position
    whichever order they arrive in.
    """

    __tablename__ = "position_contributions"

    id: int | None = _pk()
    position_id: int = Field(
        sa_column=sa.Column(BigIntPK, sa.ForeignKey("positions.id"), nullable=False, index=True)
    )
    order_id: int = Field(
        sa_column=sa.Column(BigIntPK, sa.ForeignKey("orders.id"), nullable=False, index=True)
    )
    side: str = Field(max_length=8)
    before_size: Decimal = _money()
    before_avg_entry_price: Decimal = _money()
    before_realized_pnl: Decimal = _money()
    before_fees_paid: Decimal = _money()
    before_fees: dict[str, str] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    qty: Decimal = _money(default=Decimal(0))
    value: Decimal = _money(default=Decimal(0))
    #: Fees in the PnL coin, and the part paid in the base coin (it shrinks a spot holding).
    fees_settled: Decimal = _money(default=Decimal(0))
    base_fee: Decimal = _money(default=Decimal(0))
    fees: dict[str, str] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class PositionSnapshot(SQLModel, table=True):
    __tablename__ = "position_snapshots"
    __table_args__ = (sa.Index("ix_snapshots_symbol_created", "symbol", "created_at"),)

    id: int | None = _pk()
    position_id: int = Field(
        sa_column=sa.Column(BigIntPK, sa.ForeignKey("positions.id"), nullable=False, index=True)
    )
    category: str = Field(max_length=16)
    symbol: str = Field(max_length=64)
    position_idx: int = 0
    size: Decimal = _money()
    avg_entry_price: Decimal = _money()
    realized_pnl: Decimal = _money()
    fees_paid: Decimal = _money()
    mark_price: Decimal | None = _money(nullable=True)
    unrealized_pnl: Decimal | None = _money(nullable=True)
    #: fill | periodic | sync
    reason: str = Field(max_length=16)
    created_at: datetime = _ts()


class OutboxEvent(SQLModel, table=True):
    """An event written in the same transaction as the change it describes."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_unsent", "sent_at", "id"),)

    id: int | None = _pk()
    event_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False, unique=True))
    event_type: str = Field(max_length=48)
    queue: str = Field(max_length=255)
    correlation_id: str | None = Field(default=None, max_length=128)
    #: Serialized JSON, exactly as it will be published (Decimals already strings).
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))


class TradingStateRow(SQLModel, table=True):
    """A single row (id = 1): ``active`` | ``reducing`` | ``halted``, with the reason."""

    __tablename__ = "trading_state"

    id: int = Field(default=1, primary_key=True)
    state: str = Field(max_length=16)
    reason: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    updated_at: datetime = _ts()


class QuarantinedUpdate(SQLModel, table=True):
    """An exchange report the state machine refused: kept with its payload, never applied."""

    __tablename__ = "quarantined_updates"

    id: int | None = _pk()
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    order_id: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, nullable=True))
    client_order_id: str | None = Field(default=None, max_length=64)
    exchange_order_id: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    received_at: datetime = _ts(index=True)


class OrderStatusChange(SQLModel, table=True):
    """An order's history: one row whenever its status or filled quantity changed.

    Written by the session itself (see :mod:`om_core.orders.history`), so no code path that
    changes an order can forget it.
    """

    __tablename__ = "order_status_history"

    id: int | None = _pk()
    client_order_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False, index=True))
    status: str = Field(max_length=32)
    filled_qty: Decimal = _money(default=Decimal(0))
    at: datetime = _ts()


class DeadLetterRecord(SQLModel, table=True):
    """A message a bus dead-lettered, kept with its reason until an operator acts on it.

    Written as the message is dead-lettered (the broker's ``<queue>.dlq`` keeps its own copy);
    ``state`` is ``pending`` until someone re-drives it to its queue or discards it, and
    ``resolved_by`` names who did (an API key's fingerprint, never the key).
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        sa.Index("ix_dead_letters_created_id", "created_at", "id"),
        sa.Index("ix_dead_letters_state", "state"),
    )

    id: int | None = _pk()
    #: The queue the message was taken from (and is re-driven to).
    queue: str = Field(max_length=255)
    message_id: str | None = Field(default=None, max_length=255)
    message_type: str | None = Field(default=None, max_length=255)
    correlation_id: str | None = Field(default=None, max_length=255)
    content_type: str | None = Field(default=None, max_length=255)
    #: The publisher's headers (values the JSON column cannot hold are kept as text).
    headers: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    #: Deliveries before the one that dead-lettered it.
    delivery_count: int = 0
    #: pending | redriven | discarded
    state: str = Field(max_length=16)
    resolved_by: str | None = Field(default=None, max_length=64)
    resolved_at: datetime | None = _ts(nullable=True)
    #: When it was dead-lettered.
    created_at: datetime = _ts()


class CancelRequest(SQLModel, table=True):
    """A request to cancel an order, recorded before the exchange is asked (see
    :mod:`om_core.orders.cancel`): who asked, when, and what the exchange answered.

    ``state`` is ``pending`` while the exchange is being asked, then ``accepted``,
    ``rejected`` (the exchange refused: ``reject_code`` neutral, ``exchange_code`` its own),
    ``unavailable`` (certainly not sent) or ``unknown`` (the answer was lost).
    """

    __tablename__ = "cancel_requests"
    __table_args__ = (sa.Index("ix_cancel_requests_order_id", "order_id", "id"),)

    id: int | None = _pk()
    order_id: int = Field(sa_column=sa.Column(BigIntPK, sa.ForeignKey("orders.id"), nullable=False))
    client_order_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False))
    state: str = Field(max_length=16)
    #: Who asked: an API key's fingerprint (``api-key:3f2a9c1e``) or a console user, never a key.
    requested_by: str = Field(max_length=64)
    reject_code: str | None = Field(default=None, max_length=32)
    exchange_code: str | None = Field(default=None, max_length=64)
    message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    requested_at: datetime = _ts()
    completed_at: datetime | None = _ts(nullable=True)


def table(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, for the hot paths that write without the ORM."""
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]
