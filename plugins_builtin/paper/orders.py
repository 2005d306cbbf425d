"""Orders as the paper exchange keeps them, and what happened to them."""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from om_plugins import (
    ExchangeReason,
    ExecutionReport,
    Instrument,
    OrderRequest,
    OrderStatus,
    OrderType,
    TimeInForce,
)

__all__ = ["OPEN_STATUSES", "OrderStatus", "PaperOrder"]

OPEN_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


@dataclass(slots=True)
class PaperOrder:
    """One accepted order and everything that happened to it so far."""

    order_id: str
    request: OrderRequest
    instrument: Instrument
    created_at: datetime
    updated_at: datetime
    last_price_on_created: Decimal
    status: OrderStatus = OrderStatus.NEW
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    cum_fee: Decimal = Decimal(0)
    closed_pnl: Decimal = Decimal(0)
    #: Why it was cancelled or rejected.
    reason: ExchangeReason | None = None
    executions: list[ExecutionReport] = field(default_factory=list)

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining_qty(self) -> Decimal:
        """Quantity not executed yet, whether or not the order can still execute it."""
        return self.request.qty - self.cum_qty

    @property
    def leaves_qty(self) -> Decimal:
        """What the order may still execute (0 once it is closed)."""
        return self.remaining_qty if self.is_open else Decimal(0)

    @property
    def time_in_force(self) -> TimeInForce:
        if self.request.order_type is OrderType.MARKET:
            return TimeInForce.IOC  # market orders run as IOC, as on Bybit
        return self.request.time_in_force or TimeInForce.GTC

    @property
    def avg_price(self) -> Decimal | None:
        """Average execution price; exact when representable, else to 1/10 000 of a tick."""
        if self.cum_qty == 0:
            return None
        with decimal.localcontext() as ctx:
            ctx.prec = 60
            ctx.traps[decimal.Inexact] = True
            try:
                return self.cum_value / self.cum_qty
            except decimal.Inexact:
                pass
        with decimal.localcontext() as ctx:
            ctx.prec = 60
            return (self.cum_value / self.cum_qty).quantize(
                self.instrument.tick_size.scaleb(-4), decimal.ROUND_HALF_EVEN
            )

    def finish(self, status: OrderStatus, *, reason: ExchangeReason | None = None) -> None:
        self.status = status
        if reason is not None:
            self.reason = reason

    def touch(self, now: datetime) -> None:
        # Never let the update time go backwards, even if the wall clock does.
        self.updated_at = max(self.updated_at, now)
