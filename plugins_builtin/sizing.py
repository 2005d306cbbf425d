"""Built-in position sizing: how much an order buys or sells.

Quantities are in the instrument's unit (``Instrument.qty_unit``): the base coin on linear
and spot instruments, contracts on inverse ones (Bybit's BTCUSD: one contract is 1 USD).

**Which size was asked for**, first match wins:

1. the signal's explicit ``qty`` — always in the base asset (e.g. BTC), whatever the
   instrument counts: on an inverse instrument it becomes the contracts worth that much at
   the order price;
2. the signal's ``notional`` (quote coin, e.g. USDT or USD) at the order price;
3. for a ``reduce_only`` signal with neither, the whole current position (|position size|),
   i.e. "close it";
4. otherwise ``balance_fraction`` × available balance × signal strength, valued at the order
   price. The balance is in the coin the instrument settles in (BTC for inverse). With the
   default ``balance_fraction = 0.01`` a full-strength signal commits 1 % of it.

The **order price** is the limit price for limit orders and the current reference price
(last/mark) for market orders.

**Exchange rules**, applied to that size:

* the quantity is always rounded **down** to the instrument's ``qty_step``, so an order is
  never larger than requested (nor worth more than the requested notional or budget);
* above the maximum quantity (``max_market_qty`` for market orders when the exchange has
  one, else ``max_qty``), the order is capped to the maximum when ``on_above_max = "cap"``
  (the default) or refused with ``QTY_ABOVE_MAXIMUM`` when ``on_above_max = "reject"``;
* below ``min_qty`` → refused with ``QTY_BELOW_MINIMUM``;
* worth less than ``min_notional`` (qty × order price) → refused with
  ``NOTIONAL_BELOW_MINIMUM``;
* a non-positive order price → ``INVALID_PRICE``; a requested size of zero or less (or
  nothing to close) → ``QTY_ZERO``.

Configuration (``[plugin.sizing]`` or ``OM_PLUGIN_SIZING_<FIELD>``)::

    [plugin.sizing]
    balance_fraction = "0.02"
    on_above_max = "reject"

This is the built-in default and runs last: any third-party ``om_calculate_quantity`` that
returns a decision replaces it.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from om_plugins import (
    DecisionContext,
    Instrument,
    OrderType,
    OrderTypeDecision,
    QtyUnit,
    QuantityDecision,
    Rejection,
    Signal,
    hookimpl,
)
from om_plugins.rounding import round_qty_down

__all__ = ["SizingPlugin", "SizingSettings"]

# Sizing multiplies and divides user-supplied Decimals; this context is wide enough that no
# intermediate product is rounded, and trapping Inexact would make any such rounding loud.
_WIDE = decimal.Context(
    prec=100,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)


class SizingSettings(BaseModel):
    """Settings of the built-in sizing rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    balance_fraction: Decimal = Field(
        default=Decimal("0.01"),
        gt=0,
        le=1,
        description=(
            "Share of the available balance a full-strength signal without qty or notional "
            "commits (0.01 = 1 %); scaled by the signal's strength."
        ),
    )
    on_above_max: Literal["cap", "reject"] = Field(
        default="cap",
        description=(
            "What to do when the size is above the exchange's maximum order quantity: 'cap' "
            "sends the maximum, 'reject' refuses the signal."
        ),
    )


def _reject(code: str, message: str, **details: object) -> Rejection:
    return Rejection(code=code, message=message, details={k: str(v) for k, v in details.items()})


def _qty_for_value(value: Decimal, price: Decimal, instrument: Instrument) -> Decimal:
    """The largest multiple of the step whose quote-coin value at ``price`` does not exceed
    ``value``.

    Computed as whole steps of one step's value so that no inexact division is involved:
    ``instrument.notional(result, price) <= value`` holds exactly.
    """
    step = instrument.qty_step
    with decimal.localcontext(_WIDE):
        # Both operands are positive here, so the integer division is a floor.
        steps = value // instrument.notional(step, price)
        return steps * step


class SizingPlugin:
    """Turns a signal into a base-asset quantity on the instrument's grid (see module docs)."""

    settings_model: ClassVar[type[BaseModel]] = SizingSettings

    def __init__(self, settings: SizingSettings | None = None) -> None:
        self.settings = settings if settings is not None else SizingSettings()

    @hookimpl(trylast=True)
    def om_calculate_quantity(
        self, signal: Signal, context: DecisionContext, order_type: OrderTypeDecision
    ) -> QuantityDecision | Rejection:
        instrument = context.instrument
        step = instrument.qty_step
        if order_type.order_type is OrderType.LIMIT and order_type.price is not None:
            price = order_type.price
        else:
            price = context.reference_price

        if price <= 0:
            return _reject(
                "INVALID_PRICE",
                f"cannot size an order at price {price}",
                price=price,
            )

        if signal.qty is not None:
            basis = "qty"
            requested = signal.qty
            if requested <= 0:
                return _qty_zero(basis, requested)
            if instrument.qty_unit is QtyUnit.CONTRACTS:
                # The base coin asked for, as contracts worth it at the order price.
                with decimal.localcontext(_WIDE):
                    qty = _qty_for_value(requested * price, price, instrument)
            else:
                qty = round_qty_down(requested, step)
        elif signal.notional is not None:
            basis = "notional"
            requested = signal.notional
            if requested <= 0:
                return _qty_zero(basis, requested)
            qty = _qty_for_value(requested, price, instrument)
        elif signal.reduce_only:
            basis = "close_position"
            requested = abs(context.position.size)
            if requested <= 0:
                return _qty_zero(basis, requested)
            qty = round_qty_down(requested, step)
        else:
            basis = "balance_fraction"
            with decimal.localcontext(_WIDE):
                requested = (
                    self.settings.balance_fraction * context.balance.available * signal.strength
                )
                # A balance in the base coin (inverse) is worth its price in the quote coin.
                budget = requested * price if _in_base_coin(context) else requested
            if requested <= 0:
                return _qty_zero(basis, requested)
            qty = _qty_for_value(budget, price, instrument)

        max_qty = instrument.max_qty
        if order_type.order_type is OrderType.MARKET and instrument.max_market_qty is not None:
            max_qty = instrument.max_market_qty
        if qty > max_qty:
            if self.settings.on_above_max == "reject":
                return _reject(
                    "QTY_ABOVE_MAXIMUM",
                    f"quantity {qty} is above the maximum {max_qty} for {instrument.symbol}",
                    limit=max_qty,
                    actual=qty,
                    basis=basis,
                    requested=requested,
                )
            qty = round_qty_down(max_qty, step)

        if qty <= 0 and instrument.min_qty <= 0:
            return _qty_zero(basis, requested, rounded=qty, step=step)
        if qty < instrument.min_qty:
            return _reject(
                "QTY_BELOW_MINIMUM",
                f"quantity {qty} is below the minimum {instrument.min_qty} for {instrument.symbol}",
                limit=instrument.min_qty,
                actual=qty,
                basis=basis,
                requested=requested,
                qty_step=step,
            )

        with decimal.localcontext(_WIDE):
            value = instrument.notional(qty, price)
        if value < instrument.min_notional:
            return _reject(
                "NOTIONAL_BELOW_MINIMUM",
                f"order value {value} is below the minimum {instrument.min_notional} for "
                f"{instrument.symbol}",
                limit=instrument.min_notional,
                actual=value,
                qty=qty,
                price=price,
            )

        return QuantityDecision(qty=qty)


def _in_base_coin(context: DecisionContext) -> bool:
    instrument = context.instrument
    coin = context.balance.coin
    return bool(instrument.base_coin) and coin == instrument.base_coin != instrument.quote_coin


def _qty_zero(basis: str, requested: Decimal, **extra: object) -> Rejection:
    return _reject(
        "QTY_ZERO",
        f"nothing to trade: the {basis.replace('_', ' ')} gives a quantity of {requested}",
        basis=basis,
        requested=requested,
        **extra,
    )
