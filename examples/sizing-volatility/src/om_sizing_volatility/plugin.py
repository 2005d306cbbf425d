"""Volatility-targeted sizing (``om_calculate_quantity``: the first result wins).

    qty = risk_per_trade × strength^k / (atr × atr_multiple), rounded down to qty_step

where ``k`` is 1 when ``scale_by_strength`` is on, else 0. A stop ``atr_multiple`` ATRs away
then loses about ``risk_per_trade`` (in the quote coin). The quantity is computed as whole
steps, exactly, so it never exceeds the budget.

It sizes only signals that leave the size to the engine: a signal with ``qty`` or
``notional``, or a reduce-only signal, is passed on (``None``) to the next plugin — the
built-in sizing honours those.

``metadata["atr"]`` missing or not a positive number: refused with ``ATR_MISSING`` /
``ATR_INVALID`` (``on_missing_atr = "reject"``, the default: a volatility strategy that
forgot its ATR is a bug worth seeing), or passed on to the next plugin with
``on_missing_atr = "defer"``. The exchange's limits apply as in the built-in sizing: capped
at the maximum quantity, refused below the minimum quantity (``QTY_BELOW_MINIMUM``) or value
(``NOTIONAL_BELOW_MINIMUM``).
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from om_plugins import (
    DecisionContext,
    OrderType,
    OrderTypeDecision,
    QuantityDecision,
    Rejection,
    Signal,
    hookimpl,
)
from om_plugins.rounding import round_qty_down

__all__ = ["VolatilitySizingPlugin", "VolatilitySizingSettings"]

om_api_version = ">=2,<3"

# Wide and exact: an intermediate result that would need rounding raises instead.
_EXACT = decimal.Context(
    prec=100,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)


class VolatilitySizingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    risk_per_trade: Decimal = Field(
        gt=0, description="Quote-coin amount a trade may lose at its stop, e.g. 100 (USDT)."
    )
    atr_multiple: Decimal = Field(default=Decimal(1), gt=0, description="Stop distance in ATRs.")
    scale_by_strength: bool = Field(default=False, description="Multiply by signal strength.")
    on_missing_atr: Literal["reject", "defer"] = Field(
        default="reject", description="No usable ATR: refuse, or leave sizing to the next plugin."
    )


def _reject(code: str, message: str, **details: object) -> Rejection:
    return Rejection(code=code, message=message, details={k: str(v) for k, v in details.items()})


def _read_atr(raw: Any) -> Decimal | None:
    """The ATR as a positive finite Decimal, or ``None``. Floats are refused: an exact
    number arrives as a JSON number parsed to Decimal, or as a string."""
    if isinstance(raw, bool) or not isinstance(raw, Decimal | int | str):
        return None
    try:
        value = Decimal(raw.strip()) if isinstance(raw, str) else Decimal(raw)
    except decimal.InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 else None


class VolatilitySizingPlugin:
    settings_model = VolatilitySizingSettings

    def __init__(self, settings: VolatilitySizingSettings) -> None:
        self.settings = settings

    @hookimpl
    def om_calculate_quantity(
        self, signal: Signal, context: DecisionContext, order_type: OrderTypeDecision
    ) -> QuantityDecision | Rejection | None:
        s = self.settings
        if signal.qty is not None or signal.notional is not None or signal.reduce_only:
            return None
        raw = signal.metadata.get("atr")
        atr = _read_atr(raw)
        if atr is None:
            if s.on_missing_atr == "defer":
                return None
            if raw is None:
                return _reject("ATR_MISSING", "the signal carries no metadata.atr to size by")
            return _reject("ATR_INVALID", "metadata.atr is not a positive number", atr=raw)

        rules = context.instrument
        step = rules.qty_step
        budget = s.risk_per_trade * (signal.strength if s.scale_by_strength else 1)
        with decimal.localcontext(_EXACT):
            # Whole steps whose stop loss fits the budget: exact floor, no rounded division.
            qty = (budget // (atr * s.atr_multiple * step)) * step

        limit = rules.max_qty
        if order_type.order_type is OrderType.MARKET and rules.max_market_qty is not None:
            limit = rules.max_market_qty
        qty = min(qty, round_qty_down(limit, step))
        if qty < rules.min_qty or qty <= 0:
            return _reject(
                "QTY_BELOW_MINIMUM",
                f"risk budget {budget} at ATR {atr} buys {qty}, below the minimum {rules.min_qty}",
                limit=rules.min_qty,
                actual=qty,
                atr=atr,
                budget=budget,
            )
        price = order_type.price if order_type.price is not None else context.reference_price
        value = qty * price
        if value < rules.min_notional:
            return _reject(
                "NOTIONAL_BELOW_MINIMUM",
                f"order value {value} is below the minimum {rules.min_notional}",
                limit=rules.min_notional,
                actual=value,
            )
        return QuantityDecision(qty=qty)
