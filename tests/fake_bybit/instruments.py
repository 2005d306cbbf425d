"""Instruments the fake exchange lists, in Bybit's ``instruments-info`` shape.

BTCUSDT linear and spot are copied from Bybit's documentation examples
(``docs_instruments_info_linear_response.json`` / ``..._spot_response.json`` in
``tests/flow/bybit_examples``); ETHUSDT and SOLUSDT linear reuse that shape with their own
(real-world, approximate) tick and lot sizes. BTCUSD inverse (contracts of 1 USD, settled in
BTC) has the linear shape with inverse values (approximate, not from the docs).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

_BTCUSDT_LINEAR: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "symbolId": 5,
    "contractType": "LinearPerpetual",
    "status": "Trading",
    "baseCoin": "BTC",
    "quoteCoin": "USDT",
    "launchTime": "1585526400000",
    "deliveryTime": "0",
    "deliveryFeeRate": "",
    "priceScale": "2",
    "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
    "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
    "lotSizeFilter": {
        "maxOrderQty": "1190.000",
        "minOrderQty": "0.001",
        "qtyStep": "0.001",
        "postOnlyMaxOrderQty": "1190.000",
        "maxMktOrderQty": "500.000",
        "minNotionalValue": "5",
    },
    "unifiedMarginTrade": True,
    "fundingInterval": 480,
    "settleCoin": "USDT",
    "copyTrading": "both",
    "upperFundingRate": "0.00375",
    "lowerFundingRate": "-0.00375",
    "isPreListing": False,
    "preListingInfo": None,
    "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
    "symbolType": "",
}

_BTCUSDT_SPOT: dict[str, Any] = {
    "symbolId": 9,
    "symbol": "BTCUSDT",
    "baseCoin": "BTC",
    "quoteCoin": "USDT",
    "innovation": "0",
    "status": "Trading",
    "marginTrading": "utaOnly",
    "stTag": "0",
    "lotSizeFilter": {
        "basePrecision": "0.000001",
        "quotePrecision": "0.0000001",
        "minOrderQty": "0.000011",
        "maxOrderQty": "83",
        "minOrderAmt": "5",
        "maxOrderAmt": "8000000",
        "maxLimitOrderQty": "83",
        "maxMarketOrderQty": "41.5",
        "postOnlyMaxLimitOrderSize": "60000",
    },
    "priceFilter": {"tickSize": "0.1"},
    "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
    "symbolType": "",
}


_BTCUSD_INVERSE: dict[str, Any] = {
    "symbol": "BTCUSD",
    "contractType": "InversePerpetual",
    "status": "Trading",
    "baseCoin": "BTC",
    "quoteCoin": "USD",
    "launchTime": "1585526400000",
    "deliveryTime": "0",
    "deliveryFeeRate": "",
    "priceScale": "2",
    "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
    "priceFilter": {"minPrice": "0.50", "maxPrice": "1999999.00", "tickSize": "0.50"},
    "lotSizeFilter": {
        "maxOrderQty": "1000000",
        "minOrderQty": "1",
        "qtyStep": "1",
        "postOnlyMaxOrderQty": "1000000",
        "maxMktOrderQty": "300000",
        "minNotionalValue": "",
    },
    "unifiedMarginTrade": True,
    "fundingInterval": 480,
    "settleCoin": "BTC",
    "copyTrading": "none",
    "upperFundingRate": "0.00375",
    "lowerFundingRate": "-0.00375",
    "isPreListing": False,
    "preListingInfo": None,
    "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
    "symbolType": "",
}


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable symbol in one category; ``info`` is the ``instruments-info`` list item."""

    category: str
    info: Mapping[str, Any] = field(repr=False)

    @property
    def symbol(self) -> str:
        return str(self.info["symbol"])

    @property
    def base_coin(self) -> str:
        return str(self.info["baseCoin"])

    @property
    def quote_coin(self) -> str:
        return str(self.info["quoteCoin"])

    @property
    def settle_coin(self) -> str:
        return str(self.info.get("settleCoin", self.quote_coin))

    @property
    def inverse(self) -> bool:
        """Quantities are contracts of 1 quote-coin unit; values and fees in the base coin."""
        return self.category == "inverse"

    def lot(self, name: str) -> Decimal:
        return Decimal(str(self.info["lotSizeFilter"][name]))

    def lot_or_zero(self, name: str) -> Decimal:
        value = self.info["lotSizeFilter"].get(name)
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)

    def value(self, qty: Decimal, price: Decimal) -> Decimal:
        """What ``qty`` is worth at ``price``: quote coin (linear, spot), base coin (inverse)."""
        return qty / price if self.inverse else qty * price

    @property
    def tick_size(self) -> Decimal:
        return Decimal(str(self.info["priceFilter"]["tickSize"]))

    @property
    def qty_step(self) -> Decimal:
        """Granularity of ``qty``: ``qtyStep`` for derivatives, ``basePrecision`` for spot."""
        if self.category == "spot":
            return self.lot("basePrecision")
        return self.lot("qtyStep")

    @property
    def min_price(self) -> Decimal | None:
        value = self.info["priceFilter"].get("minPrice")
        return None if value is None else Decimal(str(value))

    @property
    def max_price(self) -> Decimal | None:
        value = self.info["priceFilter"].get("maxPrice")
        return None if value is None else Decimal(str(value))


def linear_instrument(
    symbol: str,
    *,
    base_coin: str,
    tick_size: str,
    qty_step: str,
    max_order_qty: str,
    max_mkt_order_qty: str,
    max_price: str,
    min_notional: str = "5",
    price_scale: str | None = None,
    symbol_id: int = 0,
) -> Instrument:
    """A USDT perpetual shaped exactly like Bybit's BTCUSDT example, with other rules."""
    info = copy.deepcopy(_BTCUSDT_LINEAR)
    scale = price_scale if price_scale is not None else str(_decimals(Decimal(tick_size)))
    info.update(symbol=symbol, symbolId=symbol_id, baseCoin=base_coin, priceScale=scale)
    info["priceFilter"] = {"minPrice": tick_size, "maxPrice": max_price, "tickSize": tick_size}
    info["lotSizeFilter"] = {
        "maxOrderQty": max_order_qty,
        "minOrderQty": qty_step,
        "qtyStep": qty_step,
        "postOnlyMaxOrderQty": max_order_qty,
        "maxMktOrderQty": max_mkt_order_qty,
        "minNotionalValue": min_notional,
    }
    return Instrument("linear", info)


def default_instruments() -> list[Instrument]:
    """BTCUSDT/ETHUSDT/SOLUSDT perpetuals, BTCUSD inverse perpetual and BTCUSDT spot."""
    return [
        Instrument("linear", copy.deepcopy(_BTCUSDT_LINEAR)),
        linear_instrument(
            "ETHUSDT",
            base_coin="ETH",
            tick_size="0.01",
            qty_step="0.01",
            max_order_qty="7240.00",
            max_mkt_order_qty="724.00",
            max_price="199999.98",
            symbol_id=6,
        ),
        linear_instrument(
            "SOLUSDT",
            base_coin="SOL",
            tick_size="0.010",
            qty_step="0.1",
            max_order_qty="79770.0",
            max_mkt_order_qty="15950.0",
            max_price="19999.980",
            price_scale="3",
            symbol_id=47,
        ),
        Instrument("inverse", copy.deepcopy(_BTCUSD_INVERSE)),
        Instrument("spot", copy.deepcopy(_BTCUSDT_SPOT)),
    ]


DEFAULT_PRICES: dict[str, Decimal] = {
    "BTCUSD": Decimal("60000"),
    "BTCUSDT": Decimal("60000"),
    "ETHUSDT": Decimal("3000"),
    "SOLUSDT": Decimal("150"),
}


def _decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)
