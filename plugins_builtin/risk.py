"""Built-in pre-trade risk limits.

Two checkpoints, both voting hooks (every risk plugin is asked and every "no" is recorded):

* :meth:`RiskPlugin.om_check_signal` runs before any order is shaped and holds the rules
  that do not depend on size: allowed symbols, signal strength, open orders and order rate.
* :meth:`RiskPlugin.om_check_order` runs on the fully shaped order and holds the rules that
  depend on size: order notional, position notional and gross exposure.

The trading state (``halted``, ``reducing``) and the signal age are not this plugin's: the
engine enforces them on every order, with or without this plugin (``TRADING_HALTED``,
``REDUCING_ONLY``, ``SIGNAL_STALE``; the age limit is ``OM_MAX_SIGNAL_AGE_SECONDS``).

A check returns *every* rule the signal or order breaks, not just the first, so an operator
sees the whole picture at once. Each refusal carries a stable ``code`` and ``details`` with
the configured ``limit`` and the ``actual`` value, as strings.

Every limit can be switched off: leave it out of the ``[plugin.risk]`` table (for limits
that are off by default) or set it to ``"none"`` (also in an environment variable,
``OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL=none``). Out of the box only one limit is active: an
order may not be worth more than 100 000 USDT. Set the others to match your account before
trading real money.

Configuration (``[plugin.risk]`` in the config file, or ``OM_PLUGIN_RISK_<FIELD>``)::

    [plugin.risk]
    allowed_symbols = ["BTCUSDT", "ETHUSDT"]
    min_strength = "0.2"
    max_open_orders_per_symbol = 5
    max_orders_per_minute = 20
    max_order_notional = "25000"
    max_position_notional = "100000"
    max_gross_exposure = "250000"
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from om_plugins import (
    DecisionContext,
    ProposedOrder,
    Rejection,
    Signal,
    hookimpl,
)

__all__ = ["RiskPlugin", "RiskSettings"]


class RiskSettings(BaseModel):
    """Limits of the built-in risk plugin. ``None`` switches a limit off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_symbols: list[str] = Field(
        default_factory=list,
        description=(
            "Symbols that may be traded (e.g. BTCUSDT). Empty means every symbol the exchange "
            "lists. In an environment variable, separate symbols with commas."
        ),
    )
    max_signal_age_seconds: Decimal | None = Field(
        default=None,
        description=(
            "Removed: the signal age limit is the engine's, OM_MAX_SIGNAL_AGE_SECONDS "
            "(SIGNAL_STALE), enforced with or without this plugin. Setting this is an error "
            "that says so; leave it out."
        ),
    )
    min_strength: Decimal | None = Field(
        default=None, description="Refuse signals weaker than this strength."
    )
    max_open_orders_per_symbol: int | None = Field(
        default=None,
        ge=0,
        description=(
            "At most this many non-terminal orders per symbol, counting the new one: a signal "
            "is refused when this many are already open."
        ),
    )
    max_orders_per_minute: int | None = Field(
        default=None,
        ge=0,
        description=(
            "At most this many orders created per symbol in any 60 seconds, counting the new "
            "one: a signal is refused when this many were created in the last minute."
        ),
    )
    max_order_notional: Decimal | None = Field(
        default=Decimal(100_000),
        gt=0,
        description=(
            "Largest value of a single order in the quote coin (qty × limit price, or × the "
            "reference price for market orders)."
        ),
    )
    max_position_notional: Decimal | None = Field(
        default=None,
        gt=0,
        description=(
            "Largest |position| value per symbol after the order fills, at the order's price. "
            "Orders that shrink the position are always allowed by this rule."
        ),
    )
    max_gross_exposure: Decimal | None = Field(
        default=None,
        gt=0,
        description=(
            "Largest sum of |position| values over all symbols after the order fills. "
            "Orders that shrink their position are always allowed by this rule."
        ),
    )

    @field_validator(
        "max_signal_age_seconds",
        "min_strength",
        "max_open_orders_per_symbol",
        "max_orders_per_minute",
        "max_order_notional",
        "max_position_notional",
        "max_gross_exposure",
        mode="before",
    )
    @classmethod
    def _off_words(cls, value: Any) -> Any:
        # An environment variable cannot be "unset" once the default is on: accept
        # OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL=none (or an empty value) to switch a limit off.
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null", "off"):
            return None
        return value

    @field_validator("max_signal_age_seconds")
    @classmethod
    def _age_moved(cls, value: Decimal | None) -> Decimal | None:
        if value is not None:
            raise ValueError(
                "no longer a risk setting: the signal age limit is the engine's; set "
                "OM_MAX_SIGNAL_AGE_SECONDS (or max_signal_age_seconds at the top of the config "
                "file) instead and remove this one"
            )
        return value

    @field_validator("allowed_symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        # Environment variables arrive as one string: "BTCUSDT,ETHUSDT".
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.split(",")) if part]
        return value

    @field_validator("allowed_symbols")
    @classmethod
    def _upper_symbols(cls, value: list[str]) -> list[str]:
        return [symbol.strip().upper() for symbol in value]


def _reject(code: str, message: str, **details: object) -> Rejection:
    return Rejection(code=code, message=message, details={k: str(v) for k, v in details.items()})


class RiskPlugin:
    """The built-in risk limits; see the module documentation for every rule."""

    settings_model: ClassVar[type[BaseModel]] = RiskSettings

    def __init__(self, settings: RiskSettings | None = None) -> None:
        self.settings = settings if settings is not None else RiskSettings()

    # -- signal-level rules (size-independent) -------------------------------------------

    @hookimpl(trylast=True)
    def om_check_signal(self, signal: Signal, context: DecisionContext) -> list[Rejection]:
        """Size-independent rules, checked before an order is shaped.

        * ``SYMBOL_NOT_ALLOWED`` — ``allowed_symbols`` is set and does not list the symbol.
        * ``STRENGTH_TOO_LOW`` — the signal's strength is below ``min_strength``.
        * ``MAX_OPEN_ORDERS`` — the symbol already has ``max_open_orders_per_symbol``
          non-terminal orders.
        * ``ORDER_RATE_LIMIT`` — ``max_orders_per_minute`` orders were already created for
          the symbol in the last 60 seconds.
        """
        s = self.settings
        found: list[Rejection] = []

        if s.allowed_symbols and signal.symbol.upper() not in s.allowed_symbols:
            found.append(
                _reject(
                    "SYMBOL_NOT_ALLOWED",
                    f"{signal.symbol} is not in the allowed symbols",
                    limit=",".join(s.allowed_symbols),
                    actual=signal.symbol,
                )
            )

        if s.min_strength is not None and signal.strength < s.min_strength:
            found.append(
                _reject(
                    "STRENGTH_TOO_LOW",
                    f"signal strength {signal.strength} is below {s.min_strength}",
                    limit=s.min_strength,
                    actual=signal.strength,
                )
            )

        open_count = len(context.open_orders)
        if s.max_open_orders_per_symbol is not None and open_count >= s.max_open_orders_per_symbol:
            found.append(
                _reject(
                    "MAX_OPEN_ORDERS",
                    f"{signal.symbol} already has {open_count} open orders, the limit is "
                    f"{s.max_open_orders_per_symbol}",
                    limit=s.max_open_orders_per_symbol,
                    actual=open_count,
                )
            )

        recent = context.recent_order_count
        if s.max_orders_per_minute is not None and recent >= s.max_orders_per_minute:
            found.append(
                _reject(
                    "ORDER_RATE_LIMIT",
                    f"{recent} orders for {signal.symbol} in the last minute, the limit is "
                    f"{s.max_orders_per_minute}",
                    limit=s.max_orders_per_minute,
                    actual=recent,
                )
            )

        return found

    # -- order-level rules (size-dependent) ----------------------------------------------

    @hookimpl(trylast=True)
    def om_check_order(
        self, order: ProposedOrder, signal: Signal, context: DecisionContext
    ) -> list[Rejection]:
        """Size-dependent rules, checked on the order about to be sent.

        The order is valued at its limit price, or at the reference price for market
        orders; "after the order" means as if it filled completely.

        * ``MAX_ORDER_NOTIONAL`` — qty × price is above ``max_order_notional``.
        * ``MAX_POSITION_NOTIONAL`` — |position after the order| × price is above
          ``max_position_notional``, where the position counts every open order on the same
          side as filled (worst case). An order that shrinks |position| always passes, so an
          oversized position can always be reduced.
        * ``MAX_GROSS_EXPOSURE`` — the sum of |position| values over all symbols, with this
          symbol's position replaced by the position after the order, is above
          ``max_gross_exposure``. Orders that shrink |position| always pass.
        """
        s = self.settings
        found: list[Rejection] = []
        price = order.price if order.price is not None else order.reference_price
        # Worst case: every open order on this order's side fills too. Without this, two
        # signals in quick succession would each pass a limit that only one of them fits.
        pending = sum(
            (
                o.side.sign * (o.qty - o.filled_qty)
                for o in context.open_orders
                if o.side is order.side and not o.reduce_only
            ),
            Decimal(0),
        )
        current = context.position.size + pending
        after = current + order.side.sign * order.qty
        shrinks = abs(after) < abs(current)

        if s.max_order_notional is not None and order.notional > s.max_order_notional:
            found.append(
                _reject(
                    "MAX_ORDER_NOTIONAL",
                    f"order value {order.notional} is above the limit {s.max_order_notional}",
                    limit=s.max_order_notional,
                    actual=order.notional,
                )
            )

        # In the quote coin, whatever the quantity counts (contracts on inverse instruments).
        after_notional = context.instrument.notional(abs(after), price)
        if (
            s.max_position_notional is not None
            and not shrinks
            and after_notional > s.max_position_notional
        ):
            found.append(
                _reject(
                    "MAX_POSITION_NOTIONAL",
                    f"{order.symbol} position would be worth {after_notional}, the limit is "
                    f"{s.max_position_notional}",
                    limit=s.max_position_notional,
                    actual=after_notional,
                    position_size=current,
                    position_size_after=after,
                )
            )

        if s.max_gross_exposure is not None and not shrinks:
            gross_after = _gross_after(context, order.symbol, after_notional)
            if gross_after > s.max_gross_exposure:
                found.append(
                    _reject(
                        "MAX_GROSS_EXPOSURE",
                        f"gross exposure would be {gross_after}, the limit is "
                        f"{s.max_gross_exposure}",
                        limit=s.max_gross_exposure,
                        actual=gross_after,
                    )
                )

        return found


def _gross_after(context: DecisionContext, symbol: str, after_notional: Decimal) -> Decimal:
    """Gross exposure with ``symbol``'s position replaced by its value after the order.

    The current position is valued exactly as :meth:`DecisionContext.gross_exposure` values
    it, so subtracting it removes precisely what was counted.
    """
    current_counted = sum(
        (
            pos.notional(context.prices.get(pos.symbol) or pos.avg_entry_price)
            for pos in context.positions
            if pos.symbol == symbol and pos.category == context.position.category
        ),
        Decimal(0),
    )
    return context.gross_exposure() - current_counted + after_notional
