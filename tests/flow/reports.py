"""Build ``ws-gateway.order`` messages in the neutral report form (what the paper exchange,
and any exchange plugin without a wire format of its own, publishes)."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from om_plugins import (
    Category,
    ExchangeReason,
    ExecKind,
    ExecutionReport,
    Fee,
    OrderReport,
    OrderStatus,
    OrderType,
    QtyUnit,
    Side,
)
from om_plugins.reports import Report, StreamGap, encode_reports

#: Twelve hours ahead of now: test reports stay newer than the paper exchange's own however
#: long the suite runs, and within the engine's bound on future timestamps (a day ahead:
#: om_core/updates/validate.py).
T0 = int(time.time() * 1000) + 43_200_000
_clock = itertools.count(T0 + 100_000, 10)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def order(
    *,
    cid: str,
    oid: str,
    status: str,
    qty: str = "0.010",
    filled: str = "0",
    value: str | None = None,
    fees: dict[str, str] | None = None,
    side: str = "buy",
    symbol: str = "BTCUSDT",
    category: str = "linear",
    price: str | None = "50000",
    order_type: str | None = "limit",
    updated_ms: int | None = None,
    position_idx: int = 0,
    reason: ExchangeReason | None = None,
    qty_unit: str = "base",
    avg: str | None = None,
    reduce_only: bool = False,
) -> OrderReport:
    filled_qty = Decimal(filled)
    filled_value = Decimal(value) if value is not None else None
    average = Decimal(avg) if avg is not None else None
    if average is None and filled_value is not None and filled_qty:
        average = filled_value / filled_qty
    terminal = status in {"filled", "cancelled", "rejected", "partially_filled_cancelled"}
    return OrderReport(
        exchange_order_id=oid,
        client_order_id=cid,
        category=Category(category),
        symbol=symbol,
        side=Side(side),
        status=OrderStatus(status),
        qty=Decimal(qty),
        order_type=OrderType(order_type) if order_type else None,
        qty_unit=QtyUnit(qty_unit),
        price=Decimal(price) if price is not None else None,
        filled_qty=filled_qty,
        filled_value=filled_value,
        avg_price=average,
        fees=tuple(Fee(Decimal(a), c) for c, a in (fees or {}).items()),
        leaves_qty=Decimal(0) if terminal else Decimal(qty) - filled_qty,
        position_idx=position_idx,
        reduce_only=reduce_only,
        reason=reason,
        created_at=at(T0),
        updated_at=at(updated_ms if updated_ms is not None else next(_clock)),
    )


def execution(
    *,
    cid: str,
    oid: str,
    qty: str,
    price: str,
    exec_id: str | None = None,
    fee: str = "0",
    fee_currency: str = "USDT",
    side: str = "buy",
    symbol: str = "BTCUSDT",
    category: str = "linear",
    value: str | None = None,
    executed_ms: int | None = None,
    is_maker: bool | None = None,
    kind: ExecKind = ExecKind.TRADE,
    order_qty: str | None = None,
    leaves_qty: str | None = None,
) -> ExecutionReport:
    return ExecutionReport(
        exec_id=exec_id or str(uuid.uuid4()),
        exchange_order_id=oid,
        client_order_id=cid,
        category=Category(category),
        symbol=symbol,
        side=Side(side),
        qty=Decimal(qty),
        price=Decimal(price),
        executed_at=at(executed_ms if executed_ms is not None else next(_clock)),
        fee=Fee(Decimal(fee), fee_currency),
        value=Decimal(value) if value is not None else None,
        is_maker=is_maker,
        kind=kind,
        order_qty=Decimal(order_qty) if order_qty is not None else None,
        leaves_qty=Decimal(leaves_qty) if leaves_qty is not None else None,
    )


def message(*reports: Report) -> bytes:
    """One stream message carrying ``reports``."""
    return encode_reports(reports)


def gap(reason: str = "reconnected") -> bytes:
    return encode_reports([StreamGap(reason)])
