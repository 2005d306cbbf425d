"""Built-in choice of order type, limit price and time in force.

The rules, in order:

1. **Order type.** The signal's ``order_type`` when it names one; otherwise a **limit**
   order when the signal carries a ``price``, and a **market** order when it does not.
2. **Limit price.** The signal's ``price``; for a signal that asks for a limit order without
   a price, the current reference price (last/mark) of the symbol. The price is then
   rounded to the instrument's tick size in the direction that never worsens it: a buy
   limit is rounded down, a sell limit up, so the order never trades at a worse price than
   the signal allowed.
3. **Time in force.** The signal's ``time_in_force`` when it names one; otherwise
   ``default_limit_tif`` (GTC unless configured) for limit orders and IOC for market orders
   (Bybit executes market orders as immediate-or-cancel anyway).

Configuration (``[plugin.order_type]`` or ``OM_PLUGIN_ORDER_TYPE_<FIELD>``)::

    [plugin.order_type]
    default_limit_tif = "PostOnly"

This is the built-in default and runs last: any third-party ``om_select_order_type`` that
returns a decision replaces it.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from om_plugins import (
    DecisionContext,
    OrderType,
    OrderTypeDecision,
    Signal,
    TimeInForce,
    hookimpl,
)
from om_plugins.rounding import round_price

__all__ = ["OrderTypePlugin", "OrderTypeSettings"]


class OrderTypeSettings(BaseModel):
    """Settings of the built-in order-type rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_limit_tif: TimeInForce = Field(
        default=TimeInForce.GTC,
        description=(
            "Time in force of limit orders whose signal does not name one: GTC, IOC, FOK or "
            "PostOnly."
        ),
    )


class OrderTypePlugin:
    """Market or limit, the rounded limit price and the time in force (see module docs)."""

    settings_model: ClassVar[type[BaseModel]] = OrderTypeSettings

    def __init__(self, settings: OrderTypeSettings | None = None) -> None:
        self.settings = settings if settings is not None else OrderTypeSettings()

    @hookimpl(trylast=True)
    def om_select_order_type(self, signal: Signal, context: DecisionContext) -> OrderTypeDecision:
        order_type = signal.order_type
        if order_type is None:
            order_type = OrderType.LIMIT if signal.price is not None else OrderType.MARKET

        if order_type is OrderType.MARKET:
            return OrderTypeDecision(
                order_type=OrderType.MARKET,
                price=None,
                time_in_force=signal.time_in_force or TimeInForce.IOC,
            )

        raw_price = signal.price if signal.price is not None else context.reference_price
        return OrderTypeDecision(
            order_type=OrderType.LIMIT,
            price=round_price(raw_price, context.instrument.tick_size, signal.side),
            time_in_force=signal.time_in_force or self.settings.default_limit_tif,
        )
