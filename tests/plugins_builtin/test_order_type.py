from __future__ import annotations

from decimal import Decimal

import pytest

from om_plugins import OrderType, OrderTypeDecision, Side, TimeInForce
from plugins_builtin.order_type import OrderTypePlugin, OrderTypeSettings
from tests.plugins_builtin.builders import context, signal

PLUGIN = OrderTypePlugin()


def test_signal_with_price_becomes_a_gtc_limit_order() -> None:
    decision = PLUGIN.om_select_order_type(signal(price=Decimal("59000.00")), context())
    assert decision == OrderTypeDecision(
        order_type=OrderType.LIMIT, price=Decimal("59000.00"), time_in_force=TimeInForce.GTC
    )


def test_signal_without_price_becomes_an_ioc_market_order() -> None:
    decision = PLUGIN.om_select_order_type(signal(), context())
    assert decision == OrderTypeDecision(
        order_type=OrderType.MARKET, price=None, time_in_force=TimeInForce.IOC
    )


def test_market_hint_wins_over_a_price() -> None:
    decision = PLUGIN.om_select_order_type(
        signal(order_type=OrderType.MARKET, price=Decimal("59000")), context()
    )
    assert decision.order_type is OrderType.MARKET
    assert decision.price is None


@pytest.mark.parametrize(
    ("side", "raw", "expected"),
    [
        (Side.BUY, "60000.05", "60000.0"),
        (Side.SELL, "60000.05", "60000.1"),
        (Side.BUY, "60000.19", "60000.1"),
        (Side.SELL, "60000.11", "60000.2"),
        (Side.BUY, "60000.30", "60000.30"),
        (Side.SELL, "60000.30", "60000.30"),
    ],
)
def test_limit_price_is_rounded_to_tick_without_worsening_it(
    side: Side, raw: str, expected: str
) -> None:
    decision = PLUGIN.om_select_order_type(signal(side=side, price=Decimal(raw)), context())
    assert decision.price == Decimal(expected)


@pytest.mark.parametrize(("side", "expected"), [(Side.BUY, "60000.0"), (Side.SELL, "60000.1")])
def test_limit_hint_without_price_uses_the_reference_price(side: Side, expected: str) -> None:
    decision = PLUGIN.om_select_order_type(
        signal(side=side, order_type=OrderType.LIMIT), context(reference_price="60000.07")
    )
    assert decision.order_type is OrderType.LIMIT
    assert decision.price == Decimal(expected)
    assert decision.time_in_force is TimeInForce.GTC


@pytest.mark.parametrize(
    ("price", "tif"),
    [(Decimal("60000"), TimeInForce.POST_ONLY), (None, TimeInForce.FOK)],
)
def test_the_signals_time_in_force_is_kept(price: Decimal | None, tif: TimeInForce) -> None:
    decision = PLUGIN.om_select_order_type(signal(price=price, time_in_force=tif), context())
    assert decision.time_in_force is tif


def test_default_limit_time_in_force_is_configurable() -> None:
    plugin = OrderTypePlugin(
        settings=OrderTypeSettings.model_validate({"default_limit_tif": "PostOnly"})
    )
    limit = plugin.om_select_order_type(signal(price=Decimal("60000")), context())
    market = plugin.om_select_order_type(signal(), context())
    assert limit.time_in_force is TimeInForce.POST_ONLY
    assert market.time_in_force is TimeInForce.IOC
