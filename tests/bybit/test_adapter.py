"""The adapter against the fake Bybit server: placing, looking up, cancelling, listing, and
the account and market reads, in every category and account mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from om_plugins import (
    Category,
    ExchangeRejected,
    Fee,
    FeeRates,
    OrderStatus,
    OrderType,
    PositionMode,
    QtyUnit,
    ReasonCode,
    Side,
    TimeInForce,
)
from plugins_builtin.bybit import BybitExchange
from tests.bybit.conftest import CONTEXT, limit, link_id, order, settings_for
from tests.fake_bybit import FakeBybit

D = Decimal


@pytest.fixture
async def adapter_with(fake: FakeBybit) -> AsyncIterator[Any]:
    """``await adapter_with(**settings)``: an adapter with other settings, closed after."""
    made: list[BybitExchange] = []

    async def make(**overrides: Any) -> BybitExchange:
        adapter = BybitExchange(settings_for(fake, **overrides), CONTEXT)
        await adapter.start()
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


async def test_market_order_is_placed_with_decimal_strings(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    request = order(qty="0.010")
    placed = await exchange.place_order(request)
    assert placed.client_order_id == request.client_order_id
    assert placed.exchange_order_id == fake.orders[request.client_order_id].order_id
    [body] = fake.create_calls
    assert body["orderLinkId"] == request.client_order_id
    assert body["qty"] == "0.010"
    assert (body["category"], body["side"], body["orderType"]) == ("linear", "Buy", "Market")
    assert body["positionIdx"] == 0 and body["reduceOnly"] is False
    assert fake.orders[request.client_order_id].status == "Filled"
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert found is not None and found.status is OrderStatus.FILLED
    assert found.order_type is OrderType.MARKET and found.price is None


async def test_limit_order_rests_and_is_found_in_realtime(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    request = limit(price="50000.10", qty="0.002", time_in_force=TimeInForce.GTC)
    placed = await exchange.place_order(request)
    [body] = fake.create_calls
    assert body["price"] == "50000.10" and body["timeInForce"] == "GTC"

    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert found is not None
    assert found.exchange_order_id == placed.exchange_order_id
    assert (found.status, found.side, found.order_type) == (
        OrderStatus.NEW,
        Side.BUY,
        OrderType.LIMIT,
    )
    assert found.qty == Decimal("0.002") and found.price == Decimal("50000.10")
    assert found.filled_qty == 0 and found.avg_price is None and found.fees == ()
    assert found.created_at is not None and found.created_at.tzinfo is not None
    assert found.time_in_force is TimeInForce.GTC and found.position_idx == 0


async def test_spot_market_order_counts_in_base_coin(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    request = order(category=Category.SPOT, qty="0.001")
    await exchange.place_order(request)
    [body] = fake.create_calls
    assert body["marketUnit"] == "baseCoin"
    assert "positionIdx" not in body
    found = await exchange.get_order(Category.SPOT, "BTCUSDT", request.client_order_id)
    assert found is not None and found.status is OrderStatus.FILLED
    assert found.filled_qty == Decimal("0.001")  # base coin, not 0.001 USDT worth
    assert found.qty_unit is QtyUnit.BASE
    assert found.fees == (Fee(Decimal("0.000001"), "BTC"),)  # a spot buy pays in the base coin


async def test_a_quote_coin_market_buy_placed_by_hand(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    fake.exchange.create(
        {
            "category": "spot",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "orderType": "Market",
            "qty": "100",
            "marketUnit": "quoteCoin",
            "orderLinkId": "by-hand",
        }
    )
    found = await exchange.get_order(Category.SPOT, "BTCUSDT", "by-hand")
    assert found is not None and found.qty_unit is QtyUnit.QUOTE
    assert found.qty == 100 and found.filled_qty == Decimal("0.001666")  # 100 USDT, in BTC
    [execution] = await exchange.list_executions(
        Category.SPOT, "BTCUSDT", client_order_id="by-hand"
    )
    assert execution.qty == Decimal("0.001666") and execution.fee is not None
    assert execution.fee.currency == "BTC" and execution.order_qty is None


async def test_filled_order_gone_from_realtime_is_found_in_history(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    request = limit(qty="0.003")
    await exchange.place_order(request)
    await fake.fill(request.client_order_id, price=Decimal("50000"))
    fake.forget_from_realtime(request.client_order_id)
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert found is not None
    assert found.status is OrderStatus.FILLED and found.filled_qty == Decimal("0.003")
    assert found.avg_price == Decimal("50000") and found.filled_value == 150
    assert found.fees == (Fee(Decimal("0.03"), "USDT"),)  # maker 0.02 % of 150


async def test_order_known_only_by_its_trades_is_rebuilt_from_executions(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    request = limit(qty="0.004")
    placed = await exchange.place_order(request)
    await fake.fill(request.client_order_id, qty=Decimal("0.001"), price=Decimal("50000"))
    await fake.fill(request.client_order_id, qty=Decimal("0.003"), price=Decimal("49000"))
    # Bybit drops cancelled and old orders from the history; the fake has no switch for
    # that, so the order is taken out of its id index (its trades stay listed).
    del fake.exchange.orders_by_link[request.client_order_id]
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert found is not None
    assert found.exchange_order_id == placed.exchange_order_id
    assert found.status is OrderStatus.FILLED
    assert found.filled_qty == Decimal("0.004")
    assert found.avg_price == (Decimal("50") + Decimal("147")) / Decimal("0.004")
    assert found.raw["source"] == "execution-list"
    # The REST executions of derivatives have no feeCurrency: the settle coin pays.
    assert found.fees == (Fee(Decimal("0.0394"), "USDT"),)


async def test_unknown_order_is_none(exchange: BybitExchange) -> None:
    assert await exchange.get_order(Category.LINEAR, "BTCUSDT", link_id()) is None


async def test_cancel(fake: FakeBybit, exchange: BybitExchange) -> None:
    request = limit()
    await exchange.place_order(request)
    await exchange.cancel_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert fake.orders[request.client_order_id].status == "Cancelled"
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.cancel_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert raised.value.code == "110001"
    assert raised.value.reason_code == ReasonCode.ORDER_NOT_FOUND
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert found is not None and found.status is OrderStatus.CANCELLED
    assert found.reason is not None and found.reason.code == ReasonCode.CANCELLED_BY_USER


async def test_list_open_orders_reads_every_page(fake: FakeBybit, exchange: BybitExchange) -> None:
    placed = set()
    # More than one page of 50, seeded straight into the fake: 57 creates through the
    # client would take the rate limiter 5 seconds.
    for i in range(55):
        link = link_id()
        fake.exchange.create(
            {
                "category": "linear",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "0.001",
                "price": str(40000 + i),
                "orderLinkId": link,
            }
        )
        placed.add(link)
    for _ in range(2):
        request = limit(qty="0.001")
        await exchange.place_order(request)
        placed.add(request.client_order_id)
    filled = limit(price="59000", qty="0.001")
    await exchange.place_order(filled)
    await fake.fill(filled.client_order_id)
    await exchange.place_order(order(qty="0.001"))  # a market order: filled at once

    every = await exchange.list_open_orders(Category.LINEAR)
    assert {o.client_order_id for o in every} == placed
    assert len(every) == 57
    one_symbol = await exchange.list_open_orders(Category.LINEAR, "BTCUSDT")
    assert {o.client_order_id for o in one_symbol} == placed
    assert await exchange.list_open_orders(Category.LINEAR, "ETHUSDT") == []


async def test_positions(fake: FakeBybit, exchange: BybitExchange) -> None:
    await exchange.place_order(order(qty="0.010"))
    await exchange.place_order(order(symbol="ETHUSDT", side=Side.SELL, qty="0.50"))
    positions = {p.symbol: p for p in await exchange.list_positions(Category.LINEAR)}
    assert set(positions) == {"BTCUSDT", "ETHUSDT"}  # flat ones are not listed
    assert positions["BTCUSDT"].size == Decimal("0.010")
    assert positions["ETHUSDT"].size == Decimal("-0.50")
    assert positions["BTCUSDT"].avg_entry_price == Decimal("60000")
    assert positions["BTCUSDT"].position_idx == 0 and positions["BTCUSDT"].mark_price == 60000


async def test_hedge_mode_positions_orders_and_mode(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    assert await exchange.get_position_mode(Category.LINEAR, "BTCUSDT") is PositionMode.ONE_WAY
    fake.set_hedge_mode(True)
    assert await exchange.get_position_mode(Category.LINEAR, "ETHUSDT") is PositionMode.HEDGE
    # Cached per symbol: BTCUSDT was one-way when asked.
    assert await exchange.get_position_mode(Category.LINEAR, "BTCUSDT") is PositionMode.ONE_WAY
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(order(qty="0.010"))  # positionIdx 0 on a hedge account
    assert raised.value.code == "10001"
    assert raised.value.reason_code == ReasonCode.POSITION_MODE
    # The rejection dropped the cached mode: it is read again.
    assert await exchange.get_position_mode(Category.LINEAR, "BTCUSDT") is PositionMode.HEDGE

    await exchange.place_order(order(qty="0.030", position_idx=1))
    await exchange.place_order(order(qty="0.010", side=Side.SELL, position_idx=2))
    await exchange.place_order(order(qty="0.010", side=Side.SELL, position_idx=1, reduce_only=True))
    assert [c["positionIdx"] for c in fake.create_calls] == [0, 1, 2, 1]
    sides = {p.position_idx: p.size for p in await exchange.list_positions(Category.LINEAR)}
    assert sides == {1: Decimal("0.020"), 2: Decimal("-0.010")}
    assert await exchange.get_position_mode(Category.SPOT, "BTCUSDT") is PositionMode.ONE_WAY


async def test_position_mode_from_the_settings(adapter_with: Any, fake: FakeBybit) -> None:
    hedge = await adapter_with(position_mode="hedge")
    assert await hedge.get_position_mode(Category.LINEAR, "BTCUSDT") is PositionMode.HEDGE
    one_way = await adapter_with(position_mode="one_way")
    fake.set_hedge_mode(True)
    assert await one_way.get_position_mode(Category.INVERSE, "BTCUSD") is PositionMode.ONE_WAY


async def test_invalid_position_sides_are_refused_before_sending(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    for request in (
        order(category=Category.SPOT, qty="0.001", position_idx=1),
        order(position_idx=3),
    ):
        with pytest.raises(ExchangeRejected) as raised:
            await exchange.place_order(request)
        assert raised.value.reason_code == ReasonCode.POSITION_MODE
    assert fake.create_calls == []


async def test_inverse_orders_count_contracts_and_settle_in_btc(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    instrument = await exchange.get_instrument(Category.INVERSE, "BTCUSD")
    assert instrument.qty_unit is QtyUnit.CONTRACTS and instrument.settle_coin == "BTC"
    request = order(category=Category.INVERSE, symbol="BTCUSD", qty="600")
    await exchange.place_order(request)
    assert fake.create_calls[0]["qty"] == "600"
    found = await exchange.get_order(Category.INVERSE, "BTCUSD", request.client_order_id)
    assert found is not None and found.qty_unit is QtyUnit.CONTRACTS
    assert found.filled_qty == 600 and found.filled_value == Decimal("0.01")  # BTC
    assert found.avg_price == 60000
    assert found.fees == (Fee(Decimal("0.0000055"), "BTC"),)
    [position] = await exchange.list_positions(Category.INVERSE)
    assert (position.symbol, position.size) == ("BTCUSD", Decimal(600))
    [execution] = await exchange.list_executions(
        Category.INVERSE, "BTCUSD", client_order_id=request.client_order_id
    )
    assert execution.fee == Fee(Decimal("0.0000055"), "BTC")  # REST: no feeCurrency, settle coin
    assert execution.value == Decimal("0.01")


async def test_spot_balances_are_positions(fake: FakeBybit, exchange: BybitExchange) -> None:
    # The fixture's wallet holds 1 BTC and 100000 USDT.
    await exchange.place_order(order(category=Category.SPOT, qty="0.010"))
    positions = await exchange.list_positions(Category.SPOT)
    assert [(p.symbol, p.size, p.avg_entry_price) for p in positions] == [
        ("BTCUSDT", Decimal("1.00999"), None)  # 1 + 0.01 - the 0.1 % fee taken in BTC
    ]


async def test_spot_coins_can_be_chosen(adapter_with: Any, fake: FakeBybit) -> None:
    fake.exchange.wallet["DOGE"] = Decimal("5")  # no DOGEUSDT pair is listed
    chosen = await adapter_with(spot_coins="ETH")
    assert await chosen.list_positions(Category.SPOT) == []
    every = await adapter_with()
    assert [p.symbol for p in await every.list_positions(Category.SPOT)] == ["BTCUSDT"]


async def test_list_executions_by_either_id(fake: FakeBybit, exchange: BybitExchange) -> None:
    request = limit(qty="0.004")
    placed = await exchange.place_order(request)
    await exchange.place_order(order(qty="0.001"))  # another order's execution
    await fake.fill_in_parts(
        request.client_order_id,
        [(Decimal("0.001"), Decimal("50000")), (Decimal("0.003"), Decimal("49000"))],
    )
    by_link = await exchange.list_executions(
        Category.LINEAR, "BTCUSDT", client_order_id=request.client_order_id
    )
    by_id = await exchange.list_executions(
        Category.LINEAR, "BTCUSDT", exchange_order_id=placed.exchange_order_id
    )
    assert {e.exec_id for e in by_link} == {e.exec_id for e in by_id} and len(by_id) == 2
    assert sorted(e.price for e in by_id) == [Decimal("49000"), Decimal("50000")]
    assert all(e.is_maker and e.fee is not None and e.fee.currency == "USDT" for e in by_id)
    every = await exchange.list_executions(Category.LINEAR, "BTCUSDT")
    assert len(every) == 3
    since = by_id[0].executed_at + timedelta(days=1)
    assert await exchange.list_executions(Category.LINEAR, "BTCUSDT", since=since) == []


async def test_fee_rates_and_leverage(fake: FakeBybit, exchange: BybitExchange) -> None:
    fake.set_fee_rates("linear", taker=Decimal("0.00055"), maker=Decimal("-0.0001"))
    rates = await exchange.get_fee_rates(Category.LINEAR, "BTCUSDT")
    assert rates == FeeRates(maker=Decimal("-0.0001"), taker=Decimal("0.00055"))
    fake.set_fee_rates("linear", taker=Decimal("0.001"), maker=Decimal("0.001"))
    assert await exchange.get_fee_rates(Category.LINEAR, "BTCUSDT") == rates  # cached
    spot = await exchange.get_fee_rates(Category.SPOT, "BTCUSDT")
    assert spot == FeeRates(maker=Decimal("0.001"), taker=Decimal("0.001"))
    assert await exchange.get_leverage(Category.LINEAR, "BTCUSDT") == 10
    assert await exchange.get_leverage(Category.SPOT, "BTCUSDT") is None


async def test_a_category_not_enabled_is_refused_clearly(
    adapter_with: Any, fake: FakeBybit
) -> None:
    linear_only = await adapter_with(categories="linear")
    assert linear_only.categories == (Category.LINEAR,)
    with pytest.raises(ExchangeRejected) as raised:
        await linear_only.place_order(order(category=Category.SPOT, qty="0.001"))
    assert raised.value.code == "CATEGORY_DISABLED"
    assert "OM_BYBIT_CATEGORIES=linear" in raised.value.message
    with pytest.raises(ExchangeRejected):
        await linear_only.get_instrument(Category.SPOT, "BTCUSDT")
    assert fake.create_calls == []
    # Lookups and lists still work there: nothing placed earlier is stranded.
    assert await linear_only.list_open_orders(Category.SPOT) == []
    assert await linear_only.get_order(Category.INVERSE, "BTCUSD", "never") is None


async def test_balance(fake: FakeBybit, exchange: BybitExchange) -> None:
    before = await exchange.get_balance("USDT")
    assert before.coin == "USDT"
    assert before.equity == Decimal("100000") and before.available == Decimal("100000")
    await exchange.place_order(limit(price="50000", qty="0.100"))  # holds margin
    after = await exchange.get_balance("USDT")
    assert after.equity == before.equity
    assert after.available < before.available
    assert isinstance(after.available, Decimal)
    missing = await exchange.get_balance("DOGE")
    assert (missing.available, missing.equity) == (0, 0)


async def test_instruments_are_parsed_exactly(exchange: BybitExchange) -> None:
    btc = await exchange.get_instrument(Category.LINEAR, "BTCUSDT")
    assert (btc.tick_size, btc.qty_step, btc.min_qty) == (
        Decimal("0.10"),
        Decimal("0.001"),
        Decimal("0.001"),
    )
    assert (btc.max_qty, btc.max_market_qty, btc.min_notional) == (
        Decimal("1190.000"),
        Decimal("500.000"),
        Decimal("5"),
    )
    assert str(btc.tick_size) == "0.10"
    spot = await exchange.get_instrument(Category.SPOT, "BTCUSDT")
    assert spot.qty_step == Decimal("0.000001") and spot.min_notional == Decimal("5")
    listed = {i.symbol for i in await exchange.instruments(Category.LINEAR)}
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT"} <= listed
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.get_instrument(Category.LINEAR, "NOPEUSDT")
    assert raised.value.code == "SYMBOL_NOT_FOUND"
    assert raised.value.reason_code == ReasonCode.SYMBOL_NOT_TRADING
    assert exchange.categories == (Category.LINEAR, Category.INVERSE, Category.SPOT)


async def test_instrument_cache_is_refreshed_after_a_precision_rejection(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    await exchange.get_instrument(Category.LINEAR, "BTCUSDT")
    fake.exchange.instruments[("linear", "BTCUSDT")].info["lotSizeFilter"]["qtyStep"] = "0.01"
    cached = await exchange.get_instrument(Category.LINEAR, "BTCUSDT")
    assert cached.qty_step == Decimal("0.001")  # still the cached rules
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(order(qty="0.011"))  # not on the new 0.01 grid
    assert raised.value.code == "10001" and raised.value.reason_code == ReasonCode.INVALID_QTY
    fresh = await exchange.get_instrument(Category.LINEAR, "BTCUSDT")
    assert fresh.qty_step == Decimal("0.01")


async def test_tickers_and_reference_price(fake: FakeBybit, exchange: BybitExchange) -> None:
    await fake.set_price("ETHUSDT", Decimal("3123.45"))
    assert await exchange.get_reference_price(Category.LINEAR, "ETHUSDT") == Decimal("3123.45")
    tickers = {t.symbol: t for t in await exchange.tickers(Category.LINEAR)}
    assert tickers["BTCUSDT"].last_price == Decimal("60000")
    assert await exchange.get_reference_price(Category.SPOT, "BTCUSDT") == Decimal("60000")


async def test_headroom_is_reported_per_group(fake: FakeBybit) -> None:
    adapter = BybitExchange(settings_for(fake, rate_limit_create_linear=5), CONTEXT)
    try:
        assert adapter.rate_limit_headroom()["create.linear"] == 5
        await adapter.place_order(order())
        assert adapter.rate_limit_headroom()["create.linear"] == 4
        assert adapter.rate_limit_headroom()["order.realtime"] == 50
    finally:
        await adapter.close()
