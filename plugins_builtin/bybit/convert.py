"""Bybit V5 JSON ↔ the SDK's types for requests, market data and the account; orders,
executions and positions are reports (:mod:`plugins_builtin.bybit.decode`).

Bybit writes numbers as strings and "no value" as ``""``. Responses are parsed with
``parse_float=Decimal`` (see :mod:`plugins_builtin.bybit.client`), so a number never passes
through ``float`` here either: strings and ints become ``Decimal``, ``""`` becomes ``None``,
and a ``float`` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from om_plugins import (
    Balance,
    Category,
    FeeRates,
    Instrument,
    OrderRequest,
    OrderType,
    QtyUnit,
    Side,
)
from plugins_builtin.bybit.errors import ResponseError

__all__ = [
    "Ticker",
    "balance_from",
    "create_params",
    "dec",
    "dec0",
    "fee_rates_from",
    "fmt",
    "instrument_from",
    "ticker_from",
    "wallet_balance_from",
]


# -- scalars -----------------------------------------------------------------------------


def dec(value: Any, *, name: str = "value") -> Decimal | None:
    """A Bybit number (string or int) as ``Decimal``; ``""``/``None`` → ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise ResponseError(f"{name}: expected a decimal string, got {type(value).__name__}")
    if isinstance(value, Decimal):
        return value
    try:
        result = Decimal(str(value).strip()) if isinstance(value, str | int) else None
    except InvalidOperation:
        result = None
    if result is None or not result.is_finite():
        raise ResponseError(f"{name}: not a number: {value!r}")
    return result


def dec0(value: Any, *, name: str = "value") -> Decimal:
    """Like :func:`dec`, with ``0`` for no value."""
    result = dec(value, name=name)
    return Decimal(0) if result is None else result


def positive(value: Any, *, name: str = "value") -> Decimal | None:
    """A price that is ``None`` unless positive (``avgPrice`` is ``"0"`` before a fill)."""
    result = dec(value, name=name)
    return result if result is not None and result > 0 else None


def fmt(value: Decimal) -> str:
    """A Decimal as the plain decimal string Bybit expects (never ``1E-5``)."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    return format(value, "f")


def _require(item: Mapping[str, Any], key: str) -> Any:
    try:
        return item[key]
    except KeyError:
        raise ResponseError(f"missing field {key!r}") from None


# -- requests ----------------------------------------------------------------------------


def create_params(request: OrderRequest) -> dict[str, Any]:
    """The body of ``POST /v5/order/create`` for ``request``; numbers as decimal strings."""
    spot = request.category is Category.SPOT
    params: dict[str, Any] = {
        "category": request.category.value,
        "symbol": request.symbol,
        "side": "Buy" if request.side is Side.BUY else "Sell",
        "orderType": "Market" if request.order_type is OrderType.MARKET else "Limit",
        "qty": fmt(request.qty),
        "orderLinkId": request.client_order_id,
    }
    if request.order_type is OrderType.LIMIT:
        if request.price is None:
            raise ValueError(f"limit order {request.client_order_id} has no price")
        params["price"] = fmt(request.price)
    if request.time_in_force is not None:
        params["timeInForce"] = request.time_in_force.value
    if spot:
        if request.order_type is OrderType.MARKET:
            # Without it a spot market buy's qty is read as quote coin (USDT to spend).
            params["marketUnit"] = "baseCoin"
    else:
        params["reduceOnly"] = request.reduce_only
        # 0 in one-way mode; 1/2 (long/short side) in hedge mode, where Bybit requires it.
        params["positionIdx"] = request.position_idx
    if request.take_profit is not None:
        params["takeProfit"] = fmt(request.take_profit)
    if request.stop_loss is not None:
        params["stopLoss"] = fmt(request.stop_loss)
    return params


# -- account -----------------------------------------------------------------------------


def balance_from(coin_item: Mapping[str, Any]) -> Balance:
    """One ``coin`` element of ``/v5/account/wallet-balance``.

    Available is ``availableToWithdraw`` when Bybit still fills it; on accounts where it is
    empty (deprecated for unified accounts) it is equity less what positions and orders
    hold as initial margin and what is locked, never below zero.
    """
    coin = str(_require(coin_item, "coin"))
    equity = dec(coin_item.get("equity"), name="equity")
    if equity is None:
        equity = dec0(coin_item.get("walletBalance"), name="walletBalance")
    available = dec(coin_item.get("availableToWithdraw"), name="availableToWithdraw")
    if available is None:
        held = (
            dec0(coin_item.get("totalPositionIM"), name="totalPositionIM")
            + dec0(coin_item.get("totalOrderIM"), name="totalOrderIM")
            + dec0(coin_item.get("locked"), name="locked")
        )
        available = max(equity - held, Decimal(0))
    return Balance(coin=coin, available=available, equity=equity)


def wallet_balance_from(coin_item: Mapping[str, Any]) -> Decimal:
    """What the account holds of a coin (``walletBalance``, which includes what open orders
    lock), for spot balances reported as positions."""
    return dec0(coin_item.get("walletBalance"), name="walletBalance")


def fee_rates_from(item: Mapping[str, Any]) -> FeeRates:
    """One element of ``/v5/account/fee-rate``; a negative maker rate is a rebate."""
    maker = dec(item.get("makerFeeRate"), name="makerFeeRate")
    taker = dec(item.get("takerFeeRate"), name="takerFeeRate")
    if maker is None or taker is None:
        raise ResponseError("fee rate without makerFeeRate or takerFeeRate")
    return FeeRates(maker=maker, taker=taker)


# -- market ------------------------------------------------------------------------------


def instrument_from(item: Mapping[str, Any], category: Category) -> Instrument:
    """One element of ``/v5/market/instruments-info``.

    * linear: quantities in the base coin; settles in ``settleCoin`` (USDT or USDC);
    * inverse: quantities are contracts worth 1 USD each (``contract_size`` 1, ``quote_coin``
      USD); margin, fees and PnL settle in the base coin;
    * spot: ``basePrecision`` is the quantity step, ``minOrderAmt`` the minimum notional,
      ``maxLimitOrderQty``/``maxMarketOrderQty`` the caps; settles in the quote coin.
    """
    lot = item.get("lotSizeFilter") or {}
    price_filter = item.get("priceFilter") or {}
    symbol = str(_require(item, "symbol"))
    base = str(item.get("baseCoin") or "")
    quote = str(item.get("quoteCoin") or "")

    def need(mapping: Mapping[str, Any], key: str) -> Decimal:
        value = dec(mapping.get(key), name=key)
        if value is None:
            raise ResponseError(f"{symbol}: instrument has no {key}")
        return value

    tick = need(price_filter, "tickSize")
    if category is Category.SPOT:
        max_qty = dec(lot.get("maxLimitOrderQty"), name="maxLimitOrderQty")
        return Instrument(
            symbol=symbol,
            category=category,
            tick_size=tick,
            qty_step=need(lot, "basePrecision"),
            min_qty=need(lot, "minOrderQty"),
            max_qty=max_qty if max_qty is not None else need(lot, "maxOrderQty"),
            min_notional=dec0(lot.get("minOrderAmt"), name="minOrderAmt"),
            max_market_qty=dec(lot.get("maxMarketOrderQty"), name="maxMarketOrderQty"),
            base_coin=base,
            quote_coin=quote,
            settle_coin=quote,
        )
    inverse = category is Category.INVERSE
    return Instrument(
        symbol=symbol,
        category=category,
        tick_size=tick,
        qty_step=need(lot, "qtyStep"),
        min_qty=need(lot, "minOrderQty"),
        max_qty=need(lot, "maxOrderQty"),
        min_notional=dec0(lot.get("minNotionalValue"), name="minNotionalValue"),
        max_market_qty=dec(lot.get("maxMktOrderQty"), name="maxMktOrderQty"),
        base_coin=base,
        quote_coin=quote or ("USD" if inverse else ""),
        qty_unit=QtyUnit.CONTRACTS if inverse else QtyUnit.BASE,
        contract_size=Decimal(1),
        settle_coin=str(item.get("settleCoin") or (base if inverse else quote)),
    )


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    category: Category
    last_price: Decimal | None
    mark_price: Decimal | None
    bid_price: Decimal | None
    ask_price: Decimal | None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reference_price(self) -> Decimal | None:
        """The last trade price, else the mark price."""
        return self.last_price or self.mark_price


def ticker_from(item: Mapping[str, Any], category: Category) -> Ticker:
    return Ticker(
        symbol=str(_require(item, "symbol")),
        category=category,
        last_price=positive(item.get("lastPrice"), name="lastPrice"),
        mark_price=positive(item.get("markPrice"), name="markPrice"),
        bid_price=positive(item.get("bid1Price"), name="bid1Price"),
        ask_price=positive(item.get("ask1Price"), name="ask1Price"),
        raw=dict(item),
    )
