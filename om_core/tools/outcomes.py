"""What happened to one signal, read back from the database rows the engine wrote.

Shared by ``om replay`` and :mod:`om_plugins.testing`, so a test and a replay describe an
outcome the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlmodel import col, select

from om_core.db.models import Order, SignalRecord
from om_core.db.session import SessionFactory
from om_plugins.types import Category, OrderType, Side, TimeInForce

__all__ = [
    "INVALID",
    "OrderResult",
    "Outcome",
    "Reason",
    "conflict_outcome",
    "invalid_outcome",
    "plain",
    "read_outcome",
]

#: Outcome status of a message that is not a valid signal (the service dead-letters it).
INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason a signal was not traded, attributed to the plugin (or ``engine`` /
    ``exchange``) that gave it."""

    plugin: str
    code: str
    message: str
    details: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.plugin}:{self.code}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "code": self.code,
            "message": self.message,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class OrderResult:
    """An order the engine created for a signal, exactly as stored (and sent)."""

    client_order_id: str
    symbol: str
    category: Category
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None
    time_in_force: TimeInForce | None
    reduce_only: bool
    take_profit: Decimal | None
    stop_loss: Decimal | None
    #: The engine's order status (``submitted`` once the exchange accepted it, ``rejected``
    #: when the exchange refused it).
    status: str
    leg: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "leg": self.leg,
            "symbol": self.symbol,
            "category": self.category.value,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "qty": _text(self.qty),
            "price": _text(self.price),
            "time_in_force": self.time_in_force.value if self.time_in_force else None,
            "reduce_only": self.reduce_only,
            "take_profit": _text(self.take_profit),
            "stop_loss": _text(self.stop_loss),
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """The single outcome of one signal: ``placed``, ``rejected``, ``invalid`` (not a valid
    signal) or ``processing`` (an order is still in doubt)."""

    signal_id: str
    status: str
    orders: tuple[OrderResult, ...] = ()
    reasons: tuple[Reason, ...] = ()
    #: True when the signal id was already decided and this call changed nothing.
    duplicate: bool = False

    @property
    def placed(self) -> bool:
        return self.status == "placed"

    @property
    def rejected(self) -> bool:
        return self.status == "rejected"

    @property
    def order(self) -> OrderResult:
        """The one order of a placed single-leg signal; fails loudly otherwise."""
        if len(self.orders) != 1:
            raise AssertionError(
                f"signal {self.signal_id} has {len(self.orders)} orders, not one "
                f"(status {self.status}, reasons {self.codes})"
            )
        return self.orders[0]

    @property
    def codes(self) -> list[str]:
        """Rejection codes, in the order they were given."""
        return [r.code for r in self.reasons]

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal_id": self.signal_id,
            "outcome": "duplicate" if self.duplicate else self.status,
            "orders": [o.as_dict() for o in self.orders],
            "reasons": [r.as_dict() for r in self.reasons],
        }


def conflict_outcome(signal_id: str, reasons: Sequence[Mapping[str, Any]]) -> Outcome:
    """A copy refused ``SIGNAL_ID_CONFLICT``: rejected, while the stored signal keeps its own
    outcome (docs/signals.md, "Duplicates")."""
    return Outcome(signal_id=signal_id, status="rejected", reasons=tuple(map(_reason, reasons)))


def invalid_outcome(signal_id: str | None, problems: list[str]) -> Outcome:
    return Outcome(
        signal_id=signal_id or "",
        status=INVALID,
        reasons=tuple(Reason("engine", "INVALID_SIGNAL", problem) for problem in problems),
    )


async def read_outcome(
    sessions: SessionFactory, signal_id: str, *, duplicate: bool = False
) -> Outcome | None:
    """The stored outcome of ``signal_id``; ``None`` when the engine never saw it."""
    async with sessions() as session:
        row = (
            await session.exec(select(SignalRecord).where(col(SignalRecord.signal_id) == signal_id))
        ).one_or_none()
        if row is None:
            return None
        orders = (
            await session.exec(
                select(Order).where(col(Order.signal_id) == signal_id).order_by(col(Order.leg))
            )
        ).all()
    return Outcome(
        signal_id=signal_id,
        status=row.status,
        orders=tuple(_order(o) for o in orders),
        reasons=tuple(_reason(r) for r in row.reasons),
        duplicate=duplicate,
    )


def _order(row: Order) -> OrderResult:
    return OrderResult(
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        category=Category(row.category),
        side=Side(row.side),
        order_type=OrderType(row.order_type),
        qty=row.qty,
        price=row.price,
        time_in_force=TimeInForce(row.time_in_force) if row.time_in_force else None,
        reduce_only=row.reduce_only,
        take_profit=row.take_profit,
        stop_loss=row.stop_loss,
        status=row.status,
        leg=row.leg,
    )


def _reason(raw: Mapping[str, Any]) -> Reason:
    details = raw.get("details") or {}
    return Reason(
        plugin=str(raw.get("plugin", "")),
        code=str(raw.get("code", "")),
        message=str(raw.get("message", "")),
        details={str(k): str(v) for k, v in details.items()},
    )


def plain(value: Decimal) -> str:
    """``value`` in plain notation without trailing zeros (``0.010`` → ``0.01``), exactly."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _text(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)
