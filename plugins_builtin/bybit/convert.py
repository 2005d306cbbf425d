"""Bybit V5 JSON → the SDK's types.

Bybit writes numbers as strings and "no value" as ``""`` (``avgPrice`` may also be ``"0"``
before a fill). Responses are parsed with ``parse_float=Decimal`` (see
:mod:`plugins_builtin.bybit.client`), so a number never passes through ``float`` here either:
strings and ints become ``Decimal``, ``""`` becomes ``None``, and a ``float`` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from om_plugins import (
    Balance,
    Category,
    OrderReport as ExchangeOrder,
    Instrument,
    OrderRequest,
    OrderType,
    Position,
    Side,
)
from plugins_builtin.bybit.errors import ResponseError

__all__ = [
    "ExchangePosition",
    "Execution",
    "Ticker",
    "balance_from",
    "create_params",
    "dec",
    "dec0",
    "execution_from",
    "fmt",
    "instrument_from",
    "ms_to_datetime",
    "order_from",
    "order_from_executions",
    "position_from",
    "ticker_from",
]

#: ``execType`` values that are trades of an order (funding and settlement are not).
_ORDER_EXEC_TYPES = frozenset({"Trade", "AdlTrade", "BustTrade", "BlockTrade", "MovePosition"})


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


def ms_to_datetime(value: Any) -> datetime:
    """Bybit's millisecond timestamps (``"1684738540559"``) as aware UTC datetimes."""
    ms = dec(value, name="timestamp")
    if ms is None:
        raise ResponseError("missing timestamp")
    seconds, millis = divmod(int(ms), 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


def _side(value: Any) -> Side:
    if value == "Buy":
        return Side.BUY
    if value == "Sell":
        return Side.SELL
    raise ResponseError(f"unknown side {value!r}")


def _order_type(value: Any) -> OrderType:
    if value == "Market":
        return OrderType.MARKET
    if value == "Limit":
        return OrderType.LIMIT
    raise ResponseError(f"unknown order type {value!r}")


def _category(value: Any, fallback: Category) -> Category:
    if not value:
        return fallback
    try:
        return Category(value)
    except ValueError:
        raise ResponseError(f"unknown category {value!r}") from None


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
        params["positionIdx"] = request.position_idx
    if request.take_profit is not None:
        params["takeProfit"] = fmt(request.take_profit)
    if request.stop_loss is not None:
        params["stopLoss"] = fmt(request.stop_loss)
    return params


# -- orders ------------------------------------------------------------------------------


def _fee(item: Mapping[str, Any]) -> Decimal:
    fee = dec(item.get("cumExecFee"), name="cumExecFee")
    if fee is not None:
        return fee
    # cumExecFee is deprecated for linear and spot; cumFeeDetail is {coin: amount}.
    detail = item.get("cumFeeDetail") or {}
    if isinstance(detail, Mapping) and len(detail) == 1:
        return dec0(next(iter(detail.values())), name="cumFeeDetail")
    return Decimal(0)


def order_from(item: Mapping[str, Any], category: Category) -> ExchangeOrder:
    """One element of ``/v5/order/realtime`` or ``/v5/order/history`` (or the ``order``
    topic)."""
    order_type = _order_type(_require(item, "orderType"))
    reject = str(item.get("rejectReason") or "")
    return ExchangeOrder(
        exchange_order_id=str(_require(item, "orderId")),
        client_order_id=str(item.get("orderLinkId") or ""),
        symbol=str(_require(item, "symbol")),
        category=_category(item.get("category"), category),
        side=_side(_require(item, "side")),
        order_type=order_type,
        status=str(_require(item, "orderStatus")),
        qty=dec0(_require(item, "qty"), name="qty"),
        # A market order's "price" is Bybit's slippage bound, not a limit.
        price=positive(item.get("price"), name="price") if order_type is OrderType.LIMIT else None,
        filled_qty=dec0(item.get("cumExecQty"), name="cumExecQty"),
        avg_price=positive(item.get("avgPrice"), name="avgPrice"),
        cum_exec_value=dec0(item.get("cumExecValue"), name="cumExecValue"),
        cum_exec_fee=_fee(item),
        created_at=ms_to_datetime(_require(item, "createdTime")),
        updated_at=ms_to_datetime(item.get("updatedTime") or item["createdTime"]),
        reject_reason="" if reject == "EC_NoError" else reject,
        raw=dict(item),
    )


@dataclass(frozen=True, slots=True)
class Execution:
    """One trade of an order (``/v5/execution/list`` or the ``execution`` topic)."""

    exec_id: str
    exchange_order_id: str
    client_order_id: str
    symbol: str
    category: Category
    side: Side
    exec_type: str
    exec_qty: Decimal
    exec_price: Decimal
    exec_value: Decimal
    exec_fee: Decimal
    fee_currency: str
    is_maker: bool
    #: What is left of the order after this trade (``None`` when Bybit did not say).
    leaves_qty: Decimal | None
    order_qty: Decimal | None
    order_price: Decimal | None
    order_type: str
    exec_time: datetime
    raw: Mapping[str, Any] = field(default_factory=dict)


def execution_from(item: Mapping[str, Any], category: Category) -> Execution:
    qty = dec0(_require(item, "execQty"), name="execQty")
    price = dec0(_require(item, "execPrice"), name="execPrice")
    value = dec(item.get("execValue"), name="execValue")
    return Execution(
        exec_id=str(_require(item, "execId")),
        exchange_order_id=str(item.get("orderId") or ""),
        client_order_id=str(item.get("orderLinkId") or ""),
        symbol=str(_require(item, "symbol")),
        category=_category(item.get("category"), category),
        side=_side(_require(item, "side")),
        exec_type=str(item.get("execType") or ""),
        exec_qty=qty,
        exec_price=price,
        exec_value=value if value is not None else qty * price,
        exec_fee=dec0(item.get("execFee"), name="execFee"),
        fee_currency=str(item.get("feeCurrency") or ""),
        is_maker=bool(item.get("isMaker", False)),
        leaves_qty=dec(item.get("leavesQty"), name="leavesQty"),
        order_qty=dec(item.get("orderQty"), name="orderQty"),
        order_price=positive(item.get("orderPrice"), name="orderPrice"),
        order_type=str(item.get("orderType") or ""),
        exec_time=ms_to_datetime(_require(item, "execTime")),
        raw=dict(item),
    )


def order_from_executions(executions: Sequence[Execution]) -> ExchangeOrder:
    """Rebuild an order from its trades, for orders that have dropped out of both
    ``/v5/order/realtime`` and ``/v5/order/history``.

    Only what trades tell: the status is ``Filled`` when the last trade left nothing,
    otherwise ``PartiallyFilled`` (a later cancellation of the rest is not visible here).
    """
    trades = sorted(
        (e for e in executions if not e.exec_type or e.exec_type in _ORDER_EXEC_TYPES),
        key=lambda e: e.exec_time,
    )
    if not trades:
        raise ValueError("no trades to rebuild an order from")
    first, last = trades[0], trades[-1]
    filled = sum((e.exec_qty for e in trades), Decimal(0))
    value = sum((e.exec_value for e in trades), Decimal(0))
    fee = sum((e.exec_fee for e in trades), Decimal(0))
    order_type = _order_type(last.order_type) if last.order_type else OrderType.MARKET
    qty = last.order_qty if last.order_qty is not None else filled
    # Trades of one millisecond come in any order: judge by all of them, not the "last".
    done = filled >= qty or any(e.leaves_qty == 0 for e in trades)
    return ExchangeOrder(
        exchange_order_id=last.exchange_order_id,
        client_order_id=last.client_order_id,
        symbol=last.symbol,
        category=last.category,
        side=last.side,
        order_type=order_type,
        status="Filled" if done else "PartiallyFilled",
        qty=qty,
        price=last.order_price if order_type is OrderType.LIMIT else None,
        filled_qty=filled,
        avg_price=value / filled if filled else None,
        cum_exec_value=value,
        cum_exec_fee=fee,
        created_at=first.exec_time,
        updated_at=last.exec_time,
        raw={"source": "execution-list", "executions": [dict(e.raw) for e in trades]},
    )


# -- account -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    """One position as ``/v5/position/list`` reports it. ``size`` is signed (< 0 short)."""

    category: Category
    symbol: str
    size: Decimal
    avg_price: Decimal
    mark_price: Decimal | None
    unrealised_pnl: Decimal
    cum_realised_pnl: Decimal
    position_idx: int
    leverage: Decimal | None
    updated_at: datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def to_position(self) -> Position:
        return Position(
            category=self.category,
            symbol=self.symbol,
            size=self.size,
            avg_entry_price=self.avg_price,
            realized_pnl=self.cum_realised_pnl,
            position_idx=self.position_idx,
        )


def position_from(item: Mapping[str, Any], category: Category) -> ExchangePosition:
    size = dec0(_require(item, "size"), name="size")
    side = item.get("side") or ""
    if side == "Sell":
        size = -size
    elif side not in ("Buy", "", "None"):
        raise ResponseError(f"unknown position side {side!r}")
    updated = item.get("updatedTime")
    return ExchangePosition(
        category=_category(item.get("category"), category),
        symbol=str(_require(item, "symbol")),
        size=size,
        avg_price=dec0(item.get("avgPrice"), name="avgPrice"),
        mark_price=positive(item.get("markPrice"), name="markPrice"),
        unrealised_pnl=dec0(item.get("unrealisedPnl"), name="unrealisedPnl"),
        cum_realised_pnl=dec0(item.get("cumRealisedPnl"), name="cumRealisedPnl"),
        position_idx=int(item.get("positionIdx") or 0),
        leverage=dec(item.get("leverage"), name="leverage"),
        updated_at=ms_to_datetime(updated) if updated else None,
        raw=dict(item),
    )


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


# -- market ------------------------------------------------------------------------------


def instrument_from(item: Mapping[str, Any], category: Category) -> Instrument:
    """One element of ``/v5/market/instruments-info``.

    Derivatives: ``lotSizeFilter.qtyStep/minOrderQty/maxOrderQty/maxMktOrderQty/
    minNotionalValue``; spot: ``basePrecision`` is the quantity step, ``minOrderAmt`` the
    minimum notional, ``maxLimitOrderQty``/``maxMarketOrderQty`` the caps. The balance coin
    (``quote_coin``) of a derivative is its settle coin (BTC for inverse BTCUSD).
    """
    lot = item.get("lotSizeFilter") or {}
    price_filter = item.get("priceFilter") or {}
    symbol = str(_require(item, "symbol"))

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
            base_coin=str(item.get("baseCoin") or ""),
            quote_coin=str(item.get("quoteCoin") or ""),
        )
    return Instrument(
        symbol=symbol,
        category=category,
        tick_size=tick,
        qty_step=need(lot, "qtyStep"),
        min_qty=need(lot, "minOrderQty"),
        max_qty=need(lot, "maxOrderQty"),
        min_notional=dec0(lot.get("minNotionalValue"), name="minNotionalValue"),
        max_market_qty=dec(lot.get("maxMktOrderQty"), name="maxMktOrderQty"),
        base_coin=str(item.get("baseCoin") or ""),
        quote_coin=str(item.get("settleCoin") or item.get("quoteCoin") or ""),
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
