"""Position arithmetic, pure and exact.

A position has a signed size (> 0 long, < 0 short), an average entry price, realized PnL
(fees excluded) and fees paid, both in the instrument's PnL coin. A trade of ``qty`` for
``value`` (one fill, or the fills of one order taken together) in the position's direction
averages the entry price; against it, it realizes PnL on the closed part at the trade's
average price; larger than the position, it closes it and opens the other side at that price.

Values are what the exchange reports: Σ qty × price in the quote coin on linear and spot
instruments; Σ contracts × contract size / price in the base coin on inverse ones. Working
from values rather than prices makes a trade of several fills exactly the sum of its fills,
so an order's fills give the same position in whatever order they arrive.

Linear and spot: PnL = closed × (exit − entry) × direction, in the quote coin. Inverse
(qty in contracts of ``contract_size`` USD): PnL = closed × contract_size × (1/entry −
1/exit) × direction, in the base coin.

Spot fees paid in the base coin shrink the holding (``base_fee``): a buy of 1 BTC that pays
0.001 BTC in fees holds 0.999 BTC.

An entry price of 0 on a position that is not flat means *unknown*: a spot balance found by
reconciliation says what is held, not what it cost. Trading on it keeps the entry unknown and
realizes no PnL on what it closes, rather than valuing the holding at nothing.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from om_core.db.types import SCALE, strip_zeros

__all__ = ["PositionState", "apply_fill", "apply_trade", "quantize", "unrealized_pnl"]

_QUANTUM = Decimal(1).scaleb(-SCALE)
#: Sums and products of stored values (38 digits) never round in this context.
_WIDE = decimal.Context(prec=80, rounding=ROUND_HALF_EVEN)
_ZERO = Decimal(0)
_ONE = Decimal(1)


def quantize(value: Decimal) -> Decimal:
    """Round a derived value (an average, a division) to the stored scale."""
    return strip_zeros(value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE))


@dataclass(frozen=True, slots=True)
class PositionState:
    size: Decimal = _ZERO
    avg_entry_price: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO
    fees_paid: Decimal = _ZERO


def _direction(value: Decimal) -> int:
    return 1 if value > 0 else -1 if value < 0 else 0


def trade_value(qty: Decimal, price: Decimal, *, inverse: bool, contract_size: Decimal) -> Decimal:
    """The value of ``qty`` traded at ``price`` (see the module docs), to the stored scale."""
    with decimal.localcontext(_WIDE):
        return quantize(qty * contract_size / price if inverse else qty * price)


def average_price(
    qty: Decimal, value: Decimal, *, inverse: bool, contract_size: Decimal
) -> Decimal:
    """The average price of a trade of ``qty`` for ``value``."""
    if qty == 0 or value == 0:
        return _ZERO
    with decimal.localcontext(_WIDE):
        return quantize(qty * contract_size / value if inverse else value / qty)


def _entry_value(size: Decimal, avg: Decimal, inverse: bool, contract_size: Decimal) -> Decimal:
    if avg == 0:
        return _ZERO
    return abs(size) * contract_size / avg if inverse else abs(size) * avg


def apply_trade(
    state: PositionState,
    *,
    side: str,
    qty: Decimal,
    value: Decimal,
    fees_settled: Decimal = _ZERO,
    base_fee: Decimal = _ZERO,
    inverse: bool = False,
    contract_size: Decimal = _ONE,
) -> PositionState:
    """The position after trading ``qty`` for ``value`` on ``side`` (``buy``/``sell``)."""
    if qty < 0:
        raise ValueError(f"trade qty must not be negative (got {qty})")
    with decimal.localcontext(_WIDE):
        size, avg, realized = state.size, state.avg_entry_price, state.realized_pnl
        signed = qty if side == "buy" else -qty
        new_size = size + signed
        # A holding of unknown cost stays so, and what closes it realizes nothing.
        unknown_entry = size != 0 and avg == 0
        if qty == 0 or (unknown_entry and _direction(size) == _direction(signed)):
            new_avg = avg
        elif size == 0 or _direction(size) == _direction(signed):
            # Opening or adding: the entry is the average of everything held.
            held = _entry_value(size, avg, inverse, contract_size) + value
            new_avg = average_price(
                abs(new_size), held, inverse=inverse, contract_size=contract_size
            )
        else:
            closed = min(qty, abs(size))
            closed_value = value if closed == qty else value * closed / qty
            entry_value = _entry_value(closed, avg, inverse, contract_size)
            # Linear: closed × (exit − entry); inverse: closed × cs × (1/entry − 1/exit).
            gain = entry_value - closed_value if inverse else closed_value - entry_value
            if not unknown_entry:
                realized = quantize(realized + gain * _direction(size))
            if new_size == 0:
                new_avg = _ZERO
            elif _direction(new_size) != _direction(size):
                # Flipped: the remainder opened at the trade's average price.
                new_avg = average_price(qty, value, inverse=inverse, contract_size=contract_size)
            else:
                new_avg = avg
        if base_fee:
            # A fee taken in the base coin leaves less of it held (spot).
            new_size -= base_fee
            if new_size == 0:
                new_avg = _ZERO
        return PositionState(
            size=strip_zeros(new_size) if new_size else _ZERO,
            avg_entry_price=new_avg,
            realized_pnl=realized,
            fees_paid=state.fees_paid + fees_settled,
        )


def apply_fill(
    state: PositionState,
    *,
    side: str,
    qty: Decimal,
    price: Decimal,
    fee: Decimal = _ZERO,
    inverse: bool = False,
) -> PositionState:
    """The position after one fill of ``qty`` at ``price`` with ``fee`` in the PnL coin."""
    if qty <= 0:
        raise ValueError(f"fill qty must be positive (got {qty})")
    value = trade_value(qty, price, inverse=inverse, contract_size=_ONE)
    return apply_trade(state, side=side, qty=qty, value=value, fees_settled=fee, inverse=inverse)


def unrealized_pnl(
    state: PositionState, mark: Decimal, *, inverse: bool = False, contract_size: Decimal = _ONE
) -> Decimal:
    if state.size == 0 or state.avg_entry_price == 0 or mark <= 0:
        return _ZERO
    with decimal.localcontext(_WIDE):
        closed = abs(state.size)
        entry_value = _entry_value(closed, state.avg_entry_price, inverse, contract_size)
        exit_value = closed * contract_size / mark if inverse else closed * mark
        gain = entry_value - exit_value if inverse else exit_value - entry_value
        return quantize(gain * _direction(state.size))
