"""Bybit JSON ↔ SDK types for requests, market data and the account, on the docs' own example
payloads (copied into tests/flow/bybit_examples; numbers are strings, parsed with Decimal,
never float). Orders, executions and positions: test_decode.py."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from om_plugins import Category, FeeRates, OrderRequest, OrderType, QtyUnit, Side, TimeInForce
from plugins_builtin.bybit.convert import (
    balance_from,
    create_params,
    dec,
    fee_rates_from,
    instrument_from,
    ticker_from,
)
from plugins_builtin.bybit.errors import ResponseError
from tests.flow.bybit_messages import EXAMPLES


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(), parse_float=Decimal)


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
    assert (inst.base_coin, inst.quote_coin, inst.settle_coin) == ("BTC", "USDT", "USDT")
    assert inst.qty_unit is QtyUnit.BASE and inst.contract_size == 1


def test_inverse_instrument_counts_contracts_of_one_usd_settled_in_the_base_coin() -> None:
    item = example("docs_instruments_info_linear_response.json")["result"]["list"][0]
    item = {
        **item,
        "symbol": "BTCUSD",
        "contractType": "InversePerpetual",
        "quoteCoin": "USD",
        "settleCoin": "BTC",
        "lotSizeFilter": {"maxOrderQty": "1000000", "minOrderQty": "1", "qtyStep": "1"},
    }
    inst = instrument_from(item, Category.INVERSE)
    assert inst.qty_unit is QtyUnit.CONTRACTS and inst.contract_size == 1
    assert (inst.base_coin, inst.quote_coin, inst.settle_coin) == ("BTC", "USD", "BTC")
    assert inst.pnl_coin == "BTC" and inst.min_notional == 0
    assert inst.notional(Decimal(600), Decimal(60000)) == 600  # USD
    assert inst.qty_for_notional(Decimal(600), Decimal(60000)) == 600  # contracts


def test_spot_instrument_rules_use_spot_fields() -> None:
    item = example("docs_instruments_info_spot_response.json")["result"]["list"][0]
    inst = instrument_from(item, Category.SPOT)
    assert inst.qty_step == Decimal("0.000001")  # basePrecision
    assert inst.min_qty == Decimal("0.000011")
    assert inst.max_qty == Decimal("83")  # maxLimitOrderQty
    assert inst.max_market_qty == Decimal("41.5")
    assert inst.min_notional == Decimal("5")  # minOrderAmt
    assert inst.tick_size == Decimal("0.1")
    assert inst.settle_coin == "USDT" and inst.qty_unit is QtyUnit.BASE


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


@pytest.mark.parametrize("position_idx", [0, 1, 2])
def test_derivatives_orders_carry_their_position_side(position_idx: int) -> None:
    params = create_params(
        OrderRequest(
            client_order_id="h-1",
            symbol="BTCUSD",
            category=Category.INVERSE,
            side=Side.SELL,
            order_type=OrderType.MARKET,
            qty=Decimal("600"),
            reduce_only=position_idx == 1,
            position_idx=position_idx,
        )
    )
    assert params["positionIdx"] == position_idx and params["qty"] == "600"
    assert params["category"] == "inverse" and params["reduceOnly"] is (position_idx == 1)


def test_fee_rates_keep_a_negative_maker_rate() -> None:
    rates = fee_rates_from(
        {"symbol": "BTCUSDT", "takerFeeRate": "0.0006", "makerFeeRate": "-0.0001"}
    )
    assert rates == FeeRates(maker=Decimal("-0.0001"), taker=Decimal("0.0006"))
    with pytest.raises(ResponseError):
        fee_rates_from({"symbol": "BTCUSDT", "takerFeeRate": ""})
