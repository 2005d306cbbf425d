"""Order type by signal strength (``om_select_order_type``: the first result wins).

* ``strength < strength_threshold`` — a **PostOnly limit** ``offset_bps`` away from the
  reference price on the passive side (a buy below it, a sell above it), rounded to the tick
  with :func:`om_plugins.rounding.round_price`, which never rounds towards the market. It
  rests as a maker order or is cancelled by the exchange; it never takes liquidity.
* ``strength >= strength_threshold`` — a **market** order, ``market_time_in_force`` (IOC).

A signal that names its own ``order_type`` or ``price`` is passed on (``None``): the
producer asked for something specific, and the built-in rules honour it.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from om_plugins import (
    DecisionContext,
    OrderType,
    OrderTypeDecision,
    Side,
    Signal,
    TimeInForce,
    hookimpl,
)
from om_plugins.rounding import round_price

__all__ = ["PostOnlyPlugin", "PostOnlySettings"]

om_api_version = ">=2,<3"

_BPS = Decimal(10_000)


class PostOnlySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strength_threshold: Decimal = Field(
        default=Decimal("0.7"), ge=0, le=1, description="From this strength on: market."
    )
    offset_bps: Decimal = Field(
        default=Decimal(5), ge=0, lt=10_000, description="Limit distance from the reference."
    )
    market_time_in_force: TimeInForce = Field(
        default=TimeInForce.IOC, description="Time in force of market orders."
    )


class PostOnlyPlugin:
    settings_model = PostOnlySettings

    def __init__(self, settings: PostOnlySettings | None = None) -> None:
        self.settings = settings or PostOnlySettings()

    @hookimpl
    def om_select_order_type(
        self, signal: Signal, context: DecisionContext
    ) -> OrderTypeDecision | None:
        s = self.settings
        if signal.order_type is not None or signal.price is not None:
            return None
        if signal.strength >= s.strength_threshold:
            return OrderTypeDecision(OrderType.MARKET, None, s.market_time_in_force)
        # Passive side: a buy below the reference, a sell above it.
        factor = 1 - s.offset_bps / _BPS if signal.side is Side.BUY else 1 + s.offset_bps / _BPS
        price = round_price(
            context.reference_price * factor, context.instrument.tick_size, signal.side
        )
        return OrderTypeDecision(OrderType.LIMIT, price, TimeInForce.POST_ONLY)
