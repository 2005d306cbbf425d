"""The adapter against the fake Bybit server: placing, looking up, cancelling, listing, and
the account and market reads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from om_plugins import Category, ExchangeRejected, OrderType, Side, TimeInForce
from plugins_builtin.bybit import BybitExchange
from tests.bybit.conftest import CONTEXT, limit, link_id, order, settings_for
from tests.fake_bybit import FakeBybit


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
    assert (found.status, found.side, found.order_type) == ("New", Side.BUY, OrderType.LIMIT)
    assert found.qty == Decimal("0.002") and found.price == Decimal("50000.10")
    assert found.filled_qty == 0 and found.avg_price is None
    assert found.created_at.tzinfo is not None


async def test_spot_market_order_counts_in_base_coin(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    request = order(category=Category.SPOT, qty="0.001")
    await exchange.place_order(request)
    [body] = fake.create_calls
    assert body["marketUnit"] == "baseCoin"
    assert "positionIdx" not in body
    found = await exchange.get_order(Category.SPOT, "BTCUSDT", request.client_order_id)
    assert found is not None and found.status == "Filled"
    assert found.filled_qty == Decimal("0.001")  # base coin, not 0.001 USDT worth


async def test_filled_order_gone_from_realtime_is_found_in_history(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    request = limit(qty="0.003")
    await exchange.place_order(request)
    await fake.fill(request.client_order_id, price=Decimal("50000"))
    fake.forget_from_realtime(request.client_order_id)
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert found is not None
    assert found.status == "Filled" and found.filled_qty == Decimal("0.003")
    assert found.avg_price == Decimal("50000")


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
    assert found.status == "Filled"
    assert found.filled_qty == Decimal("0.004")
    assert found.avg_price == (Decimal("50") + Decimal("147")) / Decimal("0.004")
    assert found.raw["source"] == "execution-list"


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
    positions = {p.symbol: p for p in await exchange.positions(Category.LINEAR)}
    assert positions["BTCUSDT"].size == Decimal("0.010")
    assert positions["ETHUSDT"].size == Decimal("-0.50")
    assert positions["BTCUSDT"].avg_price == Decimal("60000")
    [eth] = await exchange.positions(Category.LINEAR, "ETHUSDT")
    assert eth.to_position().size == Decimal("-0.50")


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


async def test_instrument_cache_is_refreshed_after_a_precision_rejection(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    await exchange.get_instrument(Category.LINEAR, "BTCUSDT")
    fake.exchange.instruments[("linear", "BTCUSDT")].info["lotSizeFilter"]["qtyStep"] = "0.01"
    cached = await exchange.get_instrument(Category.LINEAR, "BTCUSDT")
    assert cached.qty_step == Decimal("0.001")  # still the cached rules
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(order(qty="0.011"))  # not on the new 0.01 grid
    assert raised.value.code == "10001"
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
