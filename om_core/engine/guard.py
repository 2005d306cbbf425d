"""The engine's own safety checks: trading state and signal age.

These are invariants of the engine, not plugin policy. They run on every path that decides
or sends an order — the signal processor (bus and ``POST /api/v1/signals``), the preview
(``POST /api/v1/orders/preview``, the console), and the executor's retries and resends —
before any plugin's risk check, and their refusals are kept whatever plugins say: a plugin
can add reasons not to trade, never take one of these away (``OM_PLUGINS`` without ``risk``
still halts).

* ``TRADING_HALTED`` — the trading state is ``halted``: nothing is placed.
* ``REDUCING_ONLY`` — the trading state is ``reducing`` and the order does not shrink an
  existing position: it must be on the opposite side of the position, and its quantity,
  with every open order on the same side, must not exceed the position (no reversal).
  In hedge mode the position is the side the order trades (``position_idx``), so only
  reduce-only orders can pass. A derivatives order that passes is sent reduce-only, so the
  exchange refuses it too should the position close first.
* ``SIGNAL_STALE`` — the signal is older than ``OM_MAX_SIGNAL_AGE_SECONDS``, counted from
  when it was born: it is never executed late. The check itself is the signal contract's
  (:func:`om_core.signals.contract.timing_rejection`, with ``SIGNAL_FROM_FUTURE``), one
  function whichever path asks.

Every refusal has ``plugin = "engine"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

from om_plugins.types import (
    Category,
    OpenOrder,
    Position,
    PositionMode,
    ProposedOrder,
    Rejection,
    Side,
    TradingState,
)

__all__ = [
    "REDUCING_ONLY",
    "SIGNAL_STALE",
    "TRADING_HALTED",
    "OrderLike",
    "check_order",
    "check_state",
    "halted",
    "reduces_position",
    "reducing_only",
]

TRADING_HALTED = "TRADING_HALTED"
REDUCING_ONLY = "REDUCING_ONLY"
SIGNAL_STALE = "SIGNAL_STALE"


def halted(state: TradingState) -> Rejection:
    return Rejection(
        code=TRADING_HALTED,
        message="trading is halted: nothing is placed until an operator resumes it",
        details={"trading_state": state.value},
        plugin="engine",
    )


def check_state(state: TradingState) -> list[Rejection]:
    """Size-independent: a halted engine decides no order at all."""
    return [halted(state)] if state is TradingState.HALTED else []


class OrderLike(Protocol):
    """What the reducing check needs of an order: a ``ProposedOrder`` or an ``OrderRequest``."""

    @property
    def symbol(self) -> str: ...
    @property
    def category(self) -> Category: ...
    @property
    def side(self) -> Side: ...
    @property
    def qty(self) -> Decimal: ...
    @property
    def reduce_only(self) -> bool: ...
    @property
    def position_idx(self) -> int: ...


def _sign(value: Decimal) -> int:
    return 1 if value > 0 else -1 if value < 0 else 0


def _target_position(
    order: OrderLike, mode: PositionMode, net: Position, positions: Iterable[Position]
) -> Decimal:
    """The size of the position ``order`` trades: the net one in one-way mode, in hedge
    mode the side its ``position_idx`` names."""
    if mode is PositionMode.ONE_WAY:
        return net.size
    return sum(
        (
            p.size
            for p in positions
            if p.symbol == order.symbol
            and p.category == order.category
            and p.position_idx == order.position_idx
        ),
        Decimal(0),
    )


def reduces_position(
    order: OrderLike,
    *,
    mode: PositionMode,
    position: Position,
    positions: Iterable[Position],
    open_orders: Iterable[OpenOrder],
) -> tuple[bool, Decimal, Decimal]:
    """Whether ``order`` only shrinks an existing position (never opens or reverses one),
    with every open order on its side counted as filled first.

    Returns ``(reduces, position size, quantity already working on the order's side)``.
    """
    size = _target_position(order, mode, position, positions)
    working = sum(
        (
            o.qty - o.filled_qty
            for o in open_orders
            if o.side is order.side and o.symbol == order.symbol and o.category == order.category
        ),
        Decimal(0),
    )
    if mode is PositionMode.HEDGE and not order.reduce_only:
        return False, size, working
    opposite = size != 0 and order.side.sign == -_sign(size)
    return opposite and order.qty + working <= abs(size), size, working


def reducing_only(
    order: OrderLike, state: TradingState, size: Decimal, working: Decimal
) -> Rejection:
    return Rejection(
        code=REDUCING_ONLY,
        message=(
            "trading is in the reducing state: only orders that shrink the "
            f"{order.symbol} position without reversing it are placed"
        ),
        details={
            "trading_state": state.value,
            "position_size": format(size, "f"),
            "working_qty": format(working, "f"),
            "side": order.side.value,
            "qty": format(order.qty, "f"),
        },
        plugin="engine",
    )


def check_order(
    order: ProposedOrder,
    *,
    state: TradingState,
    mode: PositionMode,
    position: Position,
    positions: Iterable[Position],
    open_orders: Iterable[OpenOrder],
) -> ProposedOrder | list[Rejection]:
    """Size-dependent: the order as it may be sent in ``state``, or why it may not.

    ``position``, ``positions`` and ``open_orders`` are the engine's position book and
    order book as read for the decision, never a plugin's view of them.
    """
    if state is TradingState.HALTED:
        return [halted(state)]
    if state is not TradingState.REDUCING:
        return order
    reduces, size, working = reduces_position(
        order, mode=mode, position=position, positions=positions, open_orders=open_orders
    )
    if not reduces:
        return [reducing_only(order, state, size, working)]
    if order.category is Category.SPOT or order.reduce_only:
        return order
    # One-way mode (hedge mode passes reduce-only orders only): position_idx stays 0.
    return dataclasses.replace(order, reduce_only=True)
