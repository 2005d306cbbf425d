"""Exact rounding of prices and quantities to an instrument's grid.

Exchanges accept only prices on the ``tick_size`` grid and quantities on the ``qty_step``
grid. These helpers snap a ``Decimal`` onto such a grid *exactly*: they never go through
``float`` and never round twice, and an operation that could not be carried out exactly
raises :class:`decimal.Inexact` instead of returning a slightly wrong number.

Which way to round matters for money:

* a quantity is rounded **down** (:func:`round_qty_down`), so an order never gets bigger than
  what was asked for or what the budget allows;
* a limit price is rounded in the direction that never makes it worse for the trader
  (:func:`round_price`): a buy limit goes down (never pay more than asked), a sell limit goes
  up (never accept less than asked).
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from om_plugins.types import Side

__all__ = ["is_multiple", "round_down", "round_price", "round_qty_down", "round_up"]

# Wide enough for any realistic price × quantity; Inexact is trapped so a result that would
# need rounding by the arithmetic itself raises instead of silently drifting off the grid.
_EXACT = decimal.Context(
    prec=100,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)


def _check_step(step: Decimal) -> None:
    if not step.is_finite() or step <= 0:
        raise ValueError(f"step must be a positive finite Decimal, got {step!r}")


def _check_value(value: Decimal) -> None:
    if not value.is_finite():
        raise ValueError(f"value must be a finite Decimal, got {value!r}")


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` that is ``<= value`` (rounds towards −∞).

    >>> round_down(Decimal("1.2345"), Decimal("0.01"))
    Decimal('1.23')
    """
    _check_step(step)
    _check_value(value)
    with decimal.localcontext(_EXACT):
        units = value // step  # exact integer part (truncates towards zero)
        floored = units * step
        if floored > value:  # only for negative values: truncation went up
            floored -= step
        return floored


def round_up(value: Decimal, step: Decimal) -> Decimal:
    """The smallest multiple of ``step`` that is ``>= value`` (rounds towards +∞).

    >>> round_up(Decimal("1.2301"), Decimal("0.01"))
    Decimal('1.24')
    """
    _check_step(step)
    _check_value(value)
    with decimal.localcontext(_EXACT):
        floored = round_down(value, step)
        return floored if floored == value else floored + step


def round_qty_down(qty: Decimal, step: Decimal) -> Decimal:
    """Round a (non-negative) quantity down to the exchange's ``qty_step``.

    The result is never larger than ``qty``, so sizing can never exceed what was requested.

    >>> round_qty_down(Decimal("0.01999"), Decimal("0.001"))
    Decimal('0.019')

    :raises ValueError: ``qty`` is negative or not finite, or ``step`` is not positive.
    """
    _check_value(qty)
    if qty < 0:
        raise ValueError(f"qty must not be negative, got {qty}")
    return round_down(qty, step)


def round_price(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """Round a limit price to ``tick`` in the direction that never worsens it.

    A **buy** limit is rounded **down** (the order never pays more than the signal allowed);
    a **sell** limit is rounded **up** (it never sells for less). A price already on the grid
    is returned unchanged.

    >>> round_price(Decimal("60000.05"), Decimal("0.1"), Side.BUY)
    Decimal('60000.0')
    >>> round_price(Decimal("60000.05"), Decimal("0.1"), Side.SELL)
    Decimal('60000.1')

    A buy price below one tick rounds to zero; callers must treat a non-positive price as
    invalid.
    """
    if side is Side.BUY:
        return round_down(price, tick)
    return round_up(price, tick)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """Whether ``value`` lies exactly on the ``step`` grid (``0`` always does).

    >>> is_multiple(Decimal("0.030"), Decimal("0.001"))
    True
    >>> is_multiple(Decimal("0.0305"), Decimal("0.001"))
    False
    """
    _check_step(step)
    _check_value(value)
    with decimal.localcontext(_EXACT):
        return value % step == 0
