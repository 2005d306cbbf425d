"""Orders as the paper exchange keeps them."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from om_plugins import Instrument, OrderRequest, OrderType, TimeInForce

__all__ = ["OPEN_STATUSES", "OrderStatus", "PaperOrder"]


class OrderStatus(StrEnum):
    """Bybit V5 ``orderStatus`` values the paper exchange uses."""

    NEW = "New"
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    #: In derivatives a cancelled order may have executed part of its quantity.
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"


OPEN_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


@dataclass(slots=True)
class PaperOrder:
    """One accepted order and everything that happened to it so far."""

    order_id: str
    request: OrderRequest
    instrument: Instrument
    created_ms: int
    updated_ms: int
    last_price_on_created: Decimal
    status: OrderStatus = OrderStatus.NEW
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    cum_fee: Decimal = Decimal(0)
    closed_pnl: Decimal = Decimal(0)
    #: Bybit's ``cancelType`` (why it was cancelled) and ``rejectReason``.
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"

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
        """Bybit's ``leavesQty``: what the order may still execute (0 once it is closed)."""
        return self.remaining_qty if self.is_open else Decimal(0)

    @property
    def time_in_force(self) -> TimeInForce:
        if self.request.order_type is OrderType.MARKET:
            return TimeInForce.IOC  # Bybit runs every market order as IOC
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

    def finish(
        self, status: OrderStatus, *, cancel_type: str = "", reject_reason: str = ""
    ) -> None:
        self.status = status
        if cancel_type:
            self.cancel_type = cancel_type
        if reject_reason:
            self.reject_reason = reject_reason

    def touch(self, now_ms: int) -> None:
        # Never let updatedTime go backwards, even if the wall clock does.
        self.updated_ms = max(self.updated_ms, now_ms)
