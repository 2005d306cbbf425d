"""Order validation the way Bybit's ``/v5/order/create`` does it, with Bybit's error codes.

Every failure raises :class:`~om_plugins.ExchangeRejected` before anything is placed:

=======  ============================================================================
code     when
=======  ============================================================================
10001    parameter error: unknown symbol or category, bad ``orderLinkId``, hedge-mode
         ``positionIdx``, qty not positive / not on ``qty_step`` / outside min-max,
         limit order without price, price not on ``tick_size``
110003   limit price outside the instrument's min/max price
110094   order value (qty × price) below ``min_notional``
110017   reduce-only order with no position to reduce (checked by the exchange)
110007   not enough available balance for the margin (checked by the exchange)
110072   the ``orderLinkId`` was used before (raised as ``DuplicateClientOrderId``)
=======  ============================================================================
"""

from __future__ import annotations

import re
from decimal import Decimal

from om_plugins import Category, ExchangeRejected, Instrument, OrderRequest, OrderType, ReasonCode
from om_plugins.rounding import is_multiple
from plugins_builtin.paper.settings import PaperInstrument

__all__ = [
    "DUPLICATE_ORDER_LINK_ID",
    "INSUFFICIENT_BALANCE",
    "ORDER_NOT_FOUND",
    "PARAMS_ERROR",
    "PRICE_OUT_OF_RANGE",
    "REDUCE_ONLY_ZERO",
    "VALUE_BELOW_MINIMUM",
    "params_error",
    "validate_request",
]

PARAMS_ERROR = "10001"
PRICE_OUT_OF_RANGE = "110003"
INSUFFICIENT_BALANCE = "110007"
REDUCE_ONLY_ZERO = "110017"
VALUE_BELOW_MINIMUM = "110094"
ORDER_NOT_FOUND = "110001"
DUPLICATE_ORDER_LINK_ID = "110072"

# Bybit: at most 36 characters from [0-9A-Za-z-_].
_ORDER_LINK_ID = re.compile(r"[0-9A-Za-z_-]{1,36}")


def params_error(detail: str, reason: ReasonCode = ReasonCode.INVALID_QTY) -> ExchangeRejected:
    return ExchangeRejected(f"params error: {detail}", code=PARAMS_ERROR, reason_code=reason)


def validate_request(
    request: OrderRequest, instrument: Instrument, rules: PaperInstrument, mark: Decimal
) -> None:
    """Raise ``ExchangeRejected`` if Bybit would refuse ``request``; return if it is valid."""
    if request.category is not Category.LINEAR:
        raise params_error(
            f"category {request.category.value} is not supported", ReasonCode.SYMBOL_NOT_TRADING
        )
    if not _ORDER_LINK_ID.fullmatch(request.client_order_id):
        raise params_error(
            "orderLinkId must be 1-36 characters of [0-9A-Za-z_-], "
            f"got {request.client_order_id!r}",
            ReasonCode.EXCHANGE_REJECTED,
        )
    if request.position_idx != 0:
        raise params_error(
            "position idx not match position mode (one-way mode only)", ReasonCode.POSITION_MODE
        )

    qty = request.qty
    if not qty.is_finite() or qty <= 0:
        raise params_error(f"qty must be positive, got {qty}")
    if not is_multiple(qty, instrument.qty_step):
        raise params_error(f"qty {qty} is not a multiple of qtyStep {instrument.qty_step}")
    if qty < instrument.min_qty:
        raise params_error(
            "The number of contracts exceeds minimum limit allowed: "
            f"order_qty:{qty} < min_qty:{instrument.min_qty}"
        )
    max_qty = instrument.max_qty
    if request.order_type is OrderType.MARKET and instrument.max_market_qty is not None:
        max_qty = instrument.max_market_qty
    if qty > max_qty:
        raise params_error(
            "The number of contracts exceeds maximum limit allowed: too large, "
            f"order_qty:{qty} > max_qty:{max_qty}"
        )

    price = mark
    if request.order_type is OrderType.LIMIT:
        if request.price is None:
            raise params_error("price is required for limit orders", ReasonCode.INVALID_PRICE)
        price = request.price
        if not price.is_finite() or price <= 0:
            raise params_error(f"price must be positive, got {price}", ReasonCode.INVALID_PRICE)
        if not is_multiple(price, instrument.tick_size):
            raise params_error(
                f"price {price} is not a multiple of tickSize {instrument.tick_size}",
                ReasonCode.INVALID_PRICE,
            )
        low = rules.min_price if rules.min_price is not None else instrument.tick_size
        if price < low or (rules.max_price is not None and price > rules.max_price):
            raise ExchangeRejected(
                f"Order price is out of permissible range: {price} not in "
                f"[{low}, {rules.max_price if rules.max_price is not None else '∞'}]",
                code=PRICE_OUT_OF_RANGE,
                reason_code=ReasonCode.PRICE_OUT_OF_RANGE,
            )

    value = qty * price
    if value < instrument.min_notional:
        raise ExchangeRejected(
            f"Order does not meet minimum order value {instrument.min_notional}"
            f"{instrument.quote_coin}: {value}",
            code=VALUE_BELOW_MINIMUM,
            reason_code=ReasonCode.MIN_NOTIONAL,
        )
