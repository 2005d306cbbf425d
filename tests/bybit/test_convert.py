"""Bybit JSON → SDK types, on the docs' own example payloads (parsed as Bybit sends them:
numbers are strings, parsed with Decimal, never float)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from om_plugins import Category, OrderRequest, OrderType, Side, TimeInForce
from plugins_builtin.bybit.convert import (
    balance_from,
    create_params,
    dec,
    execution_from,
    instrument_from,
    order_from,
    order_from_executions,
    position_from,
    ticker_from,
)
from plugins_builtin.bybit.errors import ResponseError

EXAMPLES = Path("/work/shared/reference/bybit-examples")


def example(name: str) -> Any:
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"reference example {name} is not available")
    return json.loads(path.read_text(), parse_float=Decimal)


def test_scalars_are_decimal_and_empty_is_none() -> None:
    assert dec("0.10") == Decimal("0.10")
    assert str(dec("0.10")) == "0.10"
    assert dec("") is None
    assert dec(None) is None
    assert dec(5) == Decimal(5)
    with pytest.raises(ResponseError):
        dec(0.1)
    with pytest.raises(ResponseError):
        dec("abc")


def test_linear_instrument_rules_are_exact() -> None:
    item = example("docs_instruments_info_linear_response.json")["result"]["list"][0]
    inst = instrument_from(item, Category.LINEAR)
    assert inst.symbol == "BTCUSDT"
    assert (inst.tick_size, inst.qty_step, inst.min_qty) == (
        Decimal("0.10"),
        Decimal("0.001"),
        Decimal("0.001"),
    )
    assert inst.max_qty == Decimal("1190.000")
    assert inst.max_market_qty == Decimal("500.000")
    assert inst.min_notional == Decimal("5")
    assert (inst.base_coin, inst.quote_coin) == ("BTC", "USDT")


def test_spot_instrument_rules_use_spot_fields() -> None:
    item = example("docs_instruments_info_spot_response.json")["result"]["list"][0]
    inst = instrument_from(item, Category.SPOT)
    assert inst.qty_step == Decimal("0.000001")  # basePrecision
    assert inst.min_qty == Decimal("0.000011")
    assert inst.max_qty == Decimal("83")  # maxLimitOrderQty
    assert inst.max_market_qty == Decimal("41.5")
    assert inst.min_notional == Decimal("5")  # minOrderAmt
    assert inst.tick_size == Decimal("0.1")


def test_realtime_order_item() -> None:
    item = example("docs_order_realtime_response.json")["result"]["list"][0]
    order = order_from(item, Category.LINEAR)
    assert order.exchange_order_id == "fd4300ae-7847-404e-b947-b46980a4d140"
    assert order.client_order_id == "test-000005"
    assert (order.side, order.order_type, order.status) == (Side.BUY, OrderType.LIMIT, "New")
    assert order.qty == Decimal("0.10") and order.price == Decimal("1600.00")
    assert order.filled_qty == 0 and order.avg_price is None  # avgPrice "0": no fills yet
    assert order.created_at == datetime(2023, 5, 22, 6, 55, 40, 559000, tzinfo=UTC)
    assert order.reject_reason == ""  # EC_NoError
    assert order.raw["positionIdx"] == 1


def test_execution_items_rebuild_a_filled_order() -> None:
    item = example("docs_execution_list_response.json")["result"]["list"][0]
    execution = execution_from(item, Category.LINEAR)
    assert execution.exec_qty == Decimal("0.1") and execution.exec_price == Decimal("1190.15")
    assert execution.exec_fee == Decimal("0.071409")
    order = order_from_executions([execution])
    assert order.status == "Filled"  # leavesQty "0"
    assert order.filled_qty == Decimal("0.1")
    assert order.avg_price == Decimal("119.015") / Decimal("0.1")
    assert order.price is None  # a market order has no limit


def test_position_size_is_signed() -> None:
    item = example("docs_position_list_response.json")["result"]["list"][0]
    position = position_from(item, Category.INVERSE)
    assert position.size == Decimal("-300")  # side Sell
    assert position.avg_price == Decimal("27464.50441675")
    assert position.to_position().size == Decimal("-300")


def test_wallet_coin() -> None:
    account = example("docs_wallet_balance_response.json")["result"]["list"][0]
    balance = balance_from(account["coin"][0])
    assert balance.coin == "BTC"
    assert balance.equity == 0 and balance.available == 0


def test_wallet_available_without_available_to_withdraw() -> None:
    balance = balance_from(
        {
            "coin": "USDT",
            "equity": "1000.5",
            "availableToWithdraw": "",
            "totalPositionIM": "100",
            "totalOrderIM": "50.25",
            "locked": "0",
        }
    )
    assert balance.available == Decimal("850.25")


def test_ticker_reference_price_prefers_last_price() -> None:
    item = example("docs_tickers_spot_response.json")["result"]["list"][0]
    ticker = ticker_from(item, Category.SPOT)
    assert ticker.reference_price == Decimal("20533.13")
    assert ticker_from(
        {"symbol": "X", "lastPrice": "", "markPrice": "7.5"}, Category.LINEAR
    ).reference_price == Decimal("7.5")


def test_create_params_are_plain_decimal_strings() -> None:
    params = create_params(
        OrderRequest(
            client_order_id="abc-1",
            symbol="BTCUSDT",
            category=Category.LINEAR,
            side=Side.SELL,
            order_type=OrderType.LIMIT,
            qty=Decimal("0.00001"),
            price=Decimal("6E+4"),
            time_in_force=TimeInForce.POST_ONLY,
            reduce_only=True,
            take_profit=Decimal("50000.10"),
        )
    )
    assert params == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Sell",
        "orderType": "Limit",
        "qty": "0.00001",
        "price": "60000",
        "orderLinkId": "abc-1",
        "timeInForce": "PostOnly",
        "reduceOnly": True,
        "positionIdx": 0,
        "takeProfit": "50000.10",
    }


def test_spot_market_order_counts_in_base_coin() -> None:
    params = create_params(
        OrderRequest(
            client_order_id="s-1",
            symbol="BTCUSDT",
            category=Category.SPOT,
            side=Side.BUY,
            order_type=OrderType.MARKET,
            qty=Decimal("0.001"),
        )
    )
    assert params["marketUnit"] == "baseCoin"
    assert "reduceOnly" not in params and "positionIdx" not in params and "price" not in params
