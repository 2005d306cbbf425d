"""Order-entry rules: a create request parsed, then checked against its instrument.

Derivatives answer ``retCode`` 10001 for malformed parameters and lot/tick violations (texts as
seen from Bybit: "Qty invalid", "The number of contracts exceeds minimum limit allowed", …),
110003 for a price outside ``priceFilter`` and 110094 below ``minNotionalValue``; spot answers
with its own 1701xx codes (error.mdx, "Spot Trade").  Rules that need the account (duplicates,
reduce-only, margin, balance) live in :mod:`tests.fake_bybit.state`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.fake_bybit import wire
from tests.fake_bybit.instruments import Instrument
from tests.fake_bybit.model import BybitError
from tests.fake_bybit.params import BodyParams, parse_decimal

CATEGORIES = ("linear", "inverse", "spot", "option")
_ORDER_LINK_ID = re.compile(r"[0-9A-Za-z_-]{1,36}")


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A create request as the matching engine needs it."""

    instrument: Instrument
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None
    time_in_force: str
    order_link_id: str
    reduce_only: bool
    close_on_trigger: bool
    position_idx: int
    market_unit: str
    take_profit: Decimal | None
    stop_loss: Decimal | None

    @property
    def spot(self) -> bool:
        return self.instrument.category == "spot"


def _invalid(spot: bool, spot_error: tuple[int, str], message: str) -> BybitError:
    return BybitError(*spot_error) if spot else BybitError(10001, message)


def parse_create(
    body: Mapping[str, Any], instruments: Mapping[tuple[str, str], Instrument]
) -> NewOrder:
    """Parameters of ``POST /v5/order/create``, type- and enum-checked."""
    p = BodyParams(body)
    category = p.required("category")
    if category not in CATEGORIES:
        raise BybitError(10001, "Illegal category")
    spot = category == "spot"
    inst = instruments.get((category, p.required("symbol")))
    if inst is None:
        raise _invalid(spot, (170121, "Invalid symbol."), "params error: symbol invalid")
    side = p.required("side")
    if side not in ("Buy", "Sell"):
        raise _invalid(spot, (170117, "Invalid side."), "params error: side invalid")
    order_type = p.required("orderType")
    if order_type not in ("Market", "Limit"):
        raise _invalid(spot, (170116, "Invalid orderType."), "params error: orderType invalid")
    qty = parse_decimal(p.required("qty"))
    if qty is None or qty <= 0:
        raise _invalid(spot, (170130, "Data sent for paramter 'qty' is not valid."), "Qty invalid")
    time_in_force = p.text("timeInForce", "GTC")
    if time_in_force not in ("GTC", "IOC", "FOK", "PostOnly", "RPI"):
        raise _invalid(spot, (170115, "Invalid timeInForce."), "params error: timeInForce invalid")
    link = p.text("orderLinkId")
    if link and not _ORDER_LINK_ID.fullmatch(link):
        raise BybitError(10001, "params error: orderLinkId invalid")
    position_idx = p.integer("positionIdx", 0)
    if position_idx not in (0, 1, 2):
        raise BybitError(10001, "params error: positionIdx invalid")
    p.integer("isLeverage", 0)
    p.integer("triggerDirection", 0)
    for name in ("tpslMode", "tpTriggerBy", "slTriggerBy", "orderFilter", "smpType"):
        p.text(name)
    if p.text("triggerPrice"):
        raise BybitError(10001, "fake-bybit: conditional orders (triggerPrice) not supported")
    price: Decimal | None = None
    if order_type == "Limit":
        price_text = p.text("price")
        if not price_text:
            raise BybitError(10001, "params error: price is required for a limit order")
        price = parse_decimal(price_text)
        if price is None or price <= 0:
            raise _invalid(
                spot, (170130, "Data sent for paramter 'price' is not valid."), "Price invalid"
            )
    else:
        p.text("price")  # type-checked, then ignored: market orders take the book
        time_in_force = "IOC"  # Bybit turns every market order into IOC
    return NewOrder(
        instrument=inst,
        side=side,
        order_type=order_type,
        qty=qty,
        price=price,
        time_in_force=time_in_force,
        order_link_id=link,
        reduce_only=p.flag("reduceOnly", False),
        close_on_trigger=p.flag("closeOnTrigger", False),
        position_idx=position_idx,
        market_unit=p.text("marketUnit"),
        take_profit=_optional_price(p, "takeProfit", inst),
        stop_loss=_optional_price(p, "stopLoss", inst),
    )


def _optional_price(p: BodyParams, name: str, inst: Instrument) -> Decimal | None:
    text = p.text(name)
    if not text:
        return None
    value = parse_decimal(text)
    if value is None or value % inst.tick_size != 0:
        raise BybitError(10001, f"params error: {name} invalid")
    return value if value > 0 else None


def check_derivative_lot(order: NewOrder, last: Decimal) -> Decimal:
    """Lot, tick and minimum-notional rules; returns the order's notional value in the quote
    coin (inverse: its number of 1-USD contracts)."""
    inst, qty, price = order.instrument, order.qty, order.price
    if qty % inst.qty_step != 0:
        raise BybitError(10001, "Qty invalid")
    if qty < inst.lot("minOrderQty"):
        raise BybitError(10001, "The number of contracts exceeds minimum limit allowed")
    max_qty = inst.lot("maxMktOrderQty" if order.order_type == "Market" else "maxOrderQty")
    if qty > max_qty:
        # Bybit prints quantities scaled by 1e8 here.
        raise BybitError(
            10001,
            "The number of contracts exceeds maximum limit allowed: too large, "
            f"order_qty:{int(qty * 10**8)} > max_qty:{int(max_qty * 10**8)}",
        )
    if price is not None:
        if price % inst.tick_size != 0:
            raise BybitError(10001, "Price invalid")
        low, high = inst.min_price, inst.max_price
        if (low is not None and price < low) or (high is not None and price > high):
            raise BybitError(110003, "Order price exceeds the allowable range.")
    notional = qty if inst.inverse else qty * (price if price is not None else last)
    min_notional = inst.lot_or_zero("minNotionalValue")
    if notional < min_notional:
        raise BybitError(
            110094,
            f"Order does not meet minimum order value {wire.plain(min_notional)}{inst.settle_coin}",
        )
    return notional


@dataclass(frozen=True, slots=True)
class SpotNeeds:
    """What a spot order holds back: ``amount`` of ``coin``, and its effective marketUnit."""

    market_unit: str
    amount: Decimal
    coin: str


def check_spot_lot(order: NewOrder, last: Decimal) -> SpotNeeds:
    """Spot lot, tick and minimum-amount rules (``marketUnit`` for market orders)."""
    inst, qty, price = order.instrument, order.qty, order.price
    market_unit = ""
    if order.order_type == "Market":
        market_unit = order.market_unit or ("quoteCoin" if order.side == "Buy" else "baseCoin")
        if market_unit not in ("baseCoin", "quoteCoin"):
            raise BybitError(170130, "Data sent for paramter 'marketUnit' is not valid.")
    if market_unit == "quoteCoin":
        if qty % inst.lot("quotePrecision") != 0:
            raise BybitError(170148, "Market order amount decimal too long")
        value = qty
    else:
        if qty % inst.lot("basePrecision") != 0:
            raise BybitError(170137, "Order volume decimal too long")
        if qty < inst.lot("minOrderQty"):
            raise BybitError(170136, "Order quantity lower than the minimum.")
        limit_name = "maxMarketOrderQty" if order.order_type == "Market" else "maxLimitOrderQty"
        if qty > inst.lot(limit_name):
            raise BybitError(170135, "Order quantity too large.")
        value = qty * (price if price is not None else last)
    if price is not None and price % inst.tick_size != 0:
        raise BybitError(170134, "Order price decimal too long.")
    if value < inst.lot("minOrderAmt"):
        raise BybitError(170140, "Transaction amount lower than the minimum.")
    if order.side == "Buy":
        return SpotNeeds(market_unit, value, inst.quote_coin)
    base = qty if market_unit != "quoteCoin" else qty / last
    return SpotNeeds(market_unit, base, inst.base_coin)
