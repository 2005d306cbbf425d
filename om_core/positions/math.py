"""Position arithmetic, pure and exact.

A position has a signed size (> 0 long, < 0 short), an average entry price, realized PnL
(fees excluded) and fees paid. A fill in the position's direction averages the entry price;
a fill against it realizes PnL on the closed part; a fill larger than the position closes it
and opens the opposite one at the fill price.

Linear (and spot) contracts: PnL = closed qty × (exit − entry) × direction, in the quote
coin. Inverse contracts (qty in USD contracts): PnL = closed qty × (1/entry − 1/exit) ×
direction, in the base coin.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from om_core.db.types import SCALE, strip_zeros

__all__ = ["PositionState", "apply_fill", "quantize", "unrealized_pnl"]

_QUANTUM = Decimal(1).scaleb(-SCALE)


def quantize(value: Decimal) -> Decimal:
    """Round a derived value (an average, a division) to the stored scale."""
    return strip_zeros(value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True, slots=True)
class PositionState:
    size: Decimal = Decimal(0)
    avg_entry_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)


def _direction(value: Decimal) -> int:
    return 1 if value > 0 else -1 if value < 0 else 0


def _pnl(closed: Decimal, entry: Decimal, exit_: Decimal, direction: int, inverse: bool) -> Decimal:
    if inverse:
        if entry == 0 or exit_ == 0:
            return Decimal(0)
        return quantize(closed * (1 / entry - 1 / exit_) * direction)
    # The entry is an average with up to 18 places; the product can have 36.
    return quantize(closed * (exit_ - entry) * direction)


def apply_fill(
    state: PositionState,
    *,
    side: str,
    qty: Decimal,
    price: Decimal,
    fee: Decimal = Decimal(0),
    inverse: bool = False,
) -> PositionState:
    """The position after a fill of ``qty`` at ``price`` on ``side`` (``buy``/``sell``)."""
    if qty <= 0:
        raise ValueError(f"fill qty must be positive (got {qty})")
    signed = qty if side == "buy" else -qty
    size, avg = state.size, state.avg_entry_price
    realized = state.realized_pnl
    new_size = size + signed
    if size == 0 or _direction(size) == _direction(signed):
        # Opening or adding: the entry price is the size-weighted average.
        if inverse:
            # Inverse entry averages harmonically: contracts / Σ(contracts / price).
            value = (abs(size) / avg if avg else Decimal(0)) + qty / price
            new_avg = quantize(abs(new_size) / value)
        else:
            new_avg = quantize((abs(size) * avg + qty * price) / abs(new_size))
    else:
        closed = min(qty, abs(size))
        realized += _pnl(closed, avg, price, _direction(size), inverse)
        if new_size == 0:
            new_avg = Decimal(0)
        elif _direction(new_size) != _direction(size):
            new_avg = price  # flipped: the remainder opened at this fill's price
        else:
            new_avg = avg
    return PositionState(
        size=new_size,
        avg_entry_price=new_avg,
        realized_pnl=realized,
        fees_paid=state.fees_paid + fee,
    )


def unrealized_pnl(state: PositionState, mark: Decimal, *, inverse: bool = False) -> Decimal:
    if state.size == 0:
        return Decimal(0)
    return _pnl(abs(state.size), state.avg_entry_price, mark, _direction(state.size), inverse)
