"""The fake Bybit driven by pybit's own HTTP client: orders, fills, queries, balances."""

from __future__ import annotations

import asyncio
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pybit.exceptions import InvalidRequestError
from pybit.unified_trading import HTTP

from tests.fake_bybit import FakeBybit
from tests.fake_bybit.conftest import assert_same_shape, call, example

PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def place(session: HTTP, **params: Any) -> dict[str, Any]:
    params.setdefault("category", "linear")
    params.setdefault("symbol", "BTCUSDT")
    response: dict[str, Any] = await call(session.place_order, **params)
    return response


async def realtime(session: HTTP, **params: Any) -> dict[str, Any]:
    params.setdefault("category", "linear")
    params.setdefault("symbol", "BTCUSDT")
    response: dict[str, Any] = await call(session.get_open_orders, **params)
    result: dict[str, Any] = response["result"]
    return result


async def test_market_order_fills_at_once_and_is_found_by_order_link_id(
    fake: FakeBybit, session: HTTP
) -> None:
    response = await place(session, side="Buy", orderType="Market", qty="0.01", orderLinkId="m-1")

    assert response["retCode"] == 0 and response["retMsg"] == "OK"
    assert response["result"] == {"orderId": fake.orders["m-1"].order_id, "orderLinkId": "m-1"}
    assert isinstance(response["time"], int)
    found = await realtime(session, orderLinkId="m-1")
    [order] = found["list"]
    assert order["orderStatus"] == "Filled"
    assert order["cumExecQty"] == "0.010" and order["leavesQty"] == "0.000"
    assert order["avgPrice"] == "60000" and order["cumExecValue"] == "600"
    assert order["cumExecFee"] == "0.33"  # 600 * 0.055 % taker
    assert order["timeInForce"] == "IOC"
    assert order["positionIdx"] == 0 and order["reduceOnly"] is False
    assert found["category"] == "linear" and found["nextPageCursor"] == ""
    assert fake.create_calls == [
        {
            "category": "linear",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "orderType": "Market",
            "qty": "0.01",
            "orderLinkId": "m-1",
        }
    ]


async def test_realtime_order_matches_the_docs_shape(session: HTTP) -> None:
    await place(session, side="Buy", orderType="Limit", qty="0.01", price="59000", orderLinkId="a")

    [order] = (await realtime(session, orderLinkId="a"))["list"]

    docs = example("docs_order_realtime_response.json")["result"]["list"][0]
    assert_same_shape(order, docs, where="realtime")
    assert order["price"] == "59000.00" and order["qty"] == "0.010"
    assert order["orderStatus"] == "New" and order["avgPrice"] == ""
    assert order["leavesValue"] == "590"


async def test_limit_order_rests_until_the_price_crosses_then_fills_as_maker(
    fake: FakeBybit, session: HTTP
) -> None:
    await place(session, side="Buy", orderType="Limit", qty="0.02", price="59000", orderLinkId="l")
    await fake.set_price("BTCUSDT", Decimal("59500"))
    assert fake.orders["l"].status == "New"

    await fake.set_price("BTCUSDT", Decimal("58900"))

    [order] = (await realtime(session, orderLinkId="l"))["list"]
    assert order["orderStatus"] == "Filled" and order["avgPrice"] == "59000"
    assert order["cumExecFee"] == "0.236"  # 1180 * 0.02 % maker
    executions = await call(session.get_executions, category="linear", symbol="BTCUSDT")
    [execution] = executions["result"]["list"]
    assert execution["isMaker"] is True and execution["execPrice"] == "59000"
    assert execution["orderLinkId"] == "l" and execution["execQty"] == "0.02"


async def test_crossing_limit_order_fills_at_once_at_the_market_price(session: HTTP) -> None:
    await place(session, side="Sell", orderType="Limit", qty="0.01", price="50000", orderLinkId="x")

    [order] = (await realtime(session, orderLinkId="x"))["list"]

    assert order["orderStatus"] == "Filled" and order["avgPrice"] == "60000"


async def test_post_only_that_would_cross_is_cancelled(session: HTTP) -> None:
    await place(
        session,
        side="Buy",
        orderType="Limit",
        qty="0.01",
        price="61000",
        timeInForce="PostOnly",
        orderLinkId="po",
    )

    [order] = (await realtime(session, orderLinkId="po"))["list"]

    assert order["orderStatus"] == "Cancelled"
    assert order["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
    assert order["cumExecQty"] == "0.000"


async def test_partial_fills_then_filled(fake: FakeBybit, session: HTTP) -> None:
    await place(session, side="Sell", orderType="Limit", qty="0.03", price="61000", orderLinkId="p")

    await fake.fill("p", Decimal("0.01"))
    [order] = (await realtime(session, orderLinkId="p"))["list"]
    assert order["orderStatus"] == "PartiallyFilled"
    assert order["cumExecQty"] == "0.010" and order["leavesQty"] == "0.020"

    await fake.fill("p", price=Decimal("61000.5"))
    [order] = (await realtime(session, orderLinkId="p"))["list"]
    assert order["orderStatus"] == "Filled" and order["leavesQty"] == "0.000"
    assert order["avgPrice"] == "61000.33333333"
    with pytest.raises(ValueError, match="Filled"):
        await fake.fill("p")


async def test_cancel_resting_order_then_cancel_again_is_110001(
    fake: FakeBybit, session: HTTP
) -> None:
    placed = await place(
        session, side="Buy", orderType="Limit", qty="0.01", price="59000", orderLinkId="c"
    )

    response = await call(
        session.cancel_order, category="linear", symbol="BTCUSDT", orderLinkId="c"
    )

    assert response["result"] == {"orderId": placed["result"]["orderId"], "orderLinkId": "c"}
    [order] = (await realtime(session, orderLinkId="c"))["list"]
    assert order["orderStatus"] == "Cancelled" and order["cancelType"] == "CancelByUser"
    with pytest.raises(InvalidRequestError) as again:
        await call(session.cancel_order, category="linear", symbol="BTCUSDT", orderLinkId="c")
    assert again.value.status_code == 110001
    assert again.value.message == "order not exists or too late to cancel"
    with pytest.raises(InvalidRequestError) as unknown:
        await call(session.cancel_order, category="linear", symbol="BTCUSDT", orderId="nope")
    assert unknown.value.status_code == 110001


async def test_cancel_all(fake: FakeBybit, session: HTTP) -> None:
    for n in range(2):
        await place(
            session, side="Buy", orderType="Limit", qty="0.01", price="5900" + str(n) + ".0"
        )

    response = await call(session.cancel_all_orders, category="linear", symbol="BTCUSDT")

    assert response["result"]["success"] == "1" and len(response["result"]["list"]) == 2
    assert all(not order.is_open for order in fake.exchange.orders_by_id.values())


async def test_open_orders_are_paged_newest_first_with_a_cursor(session: HTTP) -> None:
    for n in range(5):
        await place(
            session, side="Buy", orderType="Limit", qty="0.01", price="59000", orderLinkId=f"o{n}"
        )

    seen: list[str] = []
    cursors: list[str] = []
    cursor = None
    for _ in range(5):
        page = await realtime(session, limit=2, cursor=cursor)
        seen += [order["orderLinkId"] for order in page["list"]]
        cursor = page["nextPageCursor"]
        if not cursor:
            break
        cursors.append(cursor)

    assert seen == ["o4", "o3", "o2", "o1", "o0"]
    assert len(cursors) == 2 and all("%3D" in c for c in cursors)  # opaque, percent-encoded


async def test_realtime_needs_a_scope_for_linear_and_shows_closed_only_on_request(
    fake: FakeBybit, session: HTTP
) -> None:
    await place(session, side="Buy", orderType="Market", qty="0.01", orderLinkId="done")
    await place(session, side="Buy", orderType="Limit", qty="0.01", price="1000", orderLinkId="o")

    with pytest.raises(InvalidRequestError) as missing:
        await call(session.get_open_orders, category="linear")
    assert missing.value.status_code == 10001

    open_only = [o["orderLinkId"] for o in (await realtime(session))["list"]]
    with_closed = [o["orderLinkId"] for o in (await realtime(session, openOnly=1))["list"]]
    assert open_only == ["o"]
    assert with_closed == ["o", "done"]


async def test_forgotten_order_is_only_in_history(fake: FakeBybit, session: HTTP) -> None:
    await place(session, side="Buy", orderType="Market", qty="0.01", orderLinkId="gone")

    fake.forget_from_realtime("gone")

    assert (await realtime(session, orderLinkId="gone"))["list"] == []
    history = await call(session.get_order_history, category="linear", orderLinkId="gone")
    [order] = history["result"]["list"]
    assert order["orderStatus"] == "Filled"
    docs = example("docs_order_history_response.json")["result"]["list"][0]
    assert_same_shape(order, docs, where="history")


async def test_history_lists_every_status_and_filters(session: HTTP) -> None:
    await place(session, side="Buy", orderType="Market", qty="0.01", orderLinkId="f")
    await place(session, side="Buy", orderType="Limit", qty="0.01", price="1000", orderLinkId="n")

    everything = await call(session.get_order_history, category="linear")
    filled = await call(session.get_order_history, category="linear", orderStatus="Filled")

    assert [o["orderLinkId"] for o in everything["result"]["list"]] == ["n", "f"]
    assert [o["orderLinkId"] for o in filled["result"]["list"]] == ["f"]


async def test_executions_match_the_docs_shape(session: HTTP) -> None:
    await place(session, side="Buy", orderType="Market", qty="0.01", orderLinkId="e1")
    await place(session, side="Sell", orderType="Market", qty="0.01", orderLinkId="e2")

    response = await call(session.get_executions, category="linear", orderLinkId="e2")

    [execution] = response["result"]["list"]
    docs = example("docs_execution_list_response.json")["result"]["list"][0]
    assert_same_shape(execution, docs, where="execution")
    assert execution["side"] == "Sell" and execution["closedSize"] == "0.01"
    every = await call(session.get_executions, category="linear", symbol="BTCUSDT")
    assert [e["orderLinkId"] for e in every["result"]["list"]] == ["e2", "e1"]
    assert len({e["execId"] for e in every["result"]["list"]}) == 2


async def test_positions_and_balance_follow_fills(fake: FakeBybit, session: HTTP) -> None:
    await place(session, side="Buy", orderType="Market", qty="0.1")
    await fake.set_price("BTCUSDT", Decimal("61000"))

    [position] = (await call(session.get_positions, category="linear", symbol="BTCUSDT"))["result"][
        "list"
    ]
    assert_same_shape(
        position, example("docs_position_list_response.json")["result"]["list"][0], where="pos"
    )
    assert position["side"] == "Buy" and position["size"] == "0.100"
    assert position["avgPrice"] == "60000" and position["unrealisedPnl"] == "100"

    await place(session, side="Sell", orderType="Market", qty="0.1", reduceOnly=True)

    [flat] = (await call(session.get_positions, category="linear", symbol="BTCUSDT"))["result"][
        "list"
    ]
    assert flat["side"] == "" and flat["size"] == "0.000"
    # +100 realised, fees 6000 * 0.00055 + 6100 * 0.00055 = 6.655
    assert flat["cumRealisedPnl"] == "93.345"
    wallet = await call(session.get_wallet_balance, accountType="UNIFIED", coin="USDT")
    [account] = wallet["result"]["list"]
    assert_same_shape(
        account, example("docs_wallet_balance_response.json")["result"]["list"][0], where="acct"
    )
    [usdt] = account["coin"]
    assert usdt["coin"] == "USDT" and usdt["walletBalance"] == "100093.345"
    by_settle = await call(session.get_positions, category="linear", settleCoin="USDT")
    assert by_settle["result"]["list"] == []


async def test_reduce_only_needs_an_opposite_position(session: HTTP) -> None:
    with pytest.raises(InvalidRequestError) as flat:
        await place(session, side="Sell", orderType="Market", qty="0.01", reduceOnly=True)
    assert flat.value.status_code == 110017

    await place(session, side="Buy", orderType="Market", qty="0.01")
    response = await place(
        session, side="Sell", orderType="Market", qty="0.05", reduceOnly=True, orderLinkId="r"
    )

    assert response["retCode"] == 0
    [order] = (await realtime(session, orderLinkId="r"))["list"]
    assert order["qty"] == "0.010"  # trimmed to the position, as Bybit fixes reduce-only qty


async def test_instruments_and_tickers_are_public(fake: FakeBybit) -> None:
    anonymous = HTTP(testnet=True)
    anonymous.endpoint = fake.http_url

    linear = await call(anonymous.get_instruments_info, category="linear", symbol="BTCUSDT")
    spot = await call(anonymous.get_instruments_info, category="spot")
    tickers = await call(anonymous.get_tickers, category="linear", symbol="ETHUSDT")
    server_time = await call(anonymous.get_server_time)

    docs_linear = example("docs_instruments_info_linear_response.json")["result"]
    assert linear["result"]["list"] == docs_linear["list"]
    assert linear["result"]["nextPageCursor"] == ""
    assert (
        spot["result"]["list"]
        == example("docs_instruments_info_spot_response.json")["result"]["list"]
    )
    [ticker] = tickers["result"]["list"]
    docs_ticker = example("docs_tickers_inverse_response.json")["result"]["list"][0]
    assert_same_shape(ticker, docs_ticker, where="ticker")
    assert ticker["lastPrice"] == "3000.00"
    assert set(server_time["result"]) == {"timeSecond", "timeNano"}
    eth = await call(anonymous.get_instruments_info, category="linear", symbol="ETHUSDT")
    assert eth["result"]["list"][0]["lotSizeFilter"]["qtyStep"] == "0.01"


async def test_duplicate_order_link_id_is_rejected_and_nothing_placed(
    fake: FakeBybit, session: HTTP
) -> None:
    await place(session, side="Buy", orderType="Limit", qty="0.01", price="59000", orderLinkId="d")

    with pytest.raises(InvalidRequestError) as linear:
        await place(
            session, side="Buy", orderType="Limit", qty="0.01", price="59000", orderLinkId="d"
        )
    await place(
        session,
        category="spot",
        side="Buy",
        orderType="Limit",
        qty="0.001",
        price="59000",
        orderLinkId="s",
    )
    with pytest.raises(InvalidRequestError) as spot:
        await place(
            session,
            category="spot",
            side="Buy",
            orderType="Limit",
            qty="0.001",
            price="59000",
            orderLinkId="s",
        )

    assert (linear.value.status_code, linear.value.message) == (
        110072,
        "OrderLinkedID is duplicate",
    )
    assert (spot.value.status_code, spot.value.message) == (170141, "Duplicate clientOrderId")
    assert len(fake.exchange.orders_by_id) == 2
    assert [c["orderLinkId"] for c in fake.create_calls] == ["d", "d", "s", "s"]


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"qty": "0.0015"}, 10001, "Qty invalid"),
        ({"qty": "1e-05"}, 10001, "Qty invalid"),
        ({"qty": "0.0001"}, 10001, "Qty invalid"),
        (
            {"qty": "0.001", "price": "1000"},
            110094,
            "Order does not meet minimum order value 5USDT",
        ),
        ({"price": "59000.05"}, 10001, "Price invalid"),
        ({"qty": "501", "orderType": "Market"}, 10001, "The number of contracts exceeds maximum"),
        ({"qty": "100"}, 110007, "ab not enough for new order"),
        ({"positionIdx": 1}, 10001, "position idx not match position mode"),
        ({"side": "buy"}, 10001, "params error: side invalid"),
        ({"symbol": "DOGEUSDT"}, 10001, "params error: symbol invalid"),
        ({"orderLinkId": "x" * 37}, 10001, "params error: orderLinkId invalid"),
        ({"price": None}, 10001, "params error: price is required"),
    ],
)
async def test_create_validates_like_bybit(
    fake: FakeBybit, session: HTTP, params: dict[str, Any], code: int, message: str
) -> None:
    order: dict[str, Any] = {
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.01",
        "price": "59000",
        **params,
    }
    order = {k: v for k, v in order.items() if v is not None}

    with pytest.raises(InvalidRequestError) as rejected:
        await place(session, **order)

    assert rejected.value.status_code == code
    assert rejected.value.message.startswith(message)
    assert fake.exchange.orders_by_id == {}
    assert len(fake.create_calls) == 1


async def test_spot_market_buy_spends_quote_coin(fake: FakeBybit, session: HTTP) -> None:
    await place(
        session, category="spot", side="Buy", orderType="Market", qty="600", orderLinkId="sp"
    )

    found = await call(session.get_open_orders, category="spot", orderLinkId="sp")
    [order] = found["result"]["list"]
    assert order["marketUnit"] == "quoteCoin" and order["orderStatus"] == "Filled"
    assert order["cumExecQty"] == "0.01" and order["cumExecValue"] == "600"
    assert fake.exchange.wallet["BTC"] == Decimal("0.00999")  # 0.1 % fee in BTC
    assert fake.exchange.wallet["USDT"] == Decimal("99400")
    with pytest.raises(InvalidRequestError) as short:
        await place(session, category="spot", side="Sell", orderType="Market", qty="0.02")
    assert short.value.status_code == 170131


async def test_standalone_run_prints_its_urls_and_serves() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fake_bybit",
        "--port",
        "0",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(3)]
        rest_url = lines[0].split()[-1]
        assert lines[1].split()[-1] == rest_url.replace("http://", "ws://") + "/v5/private"
        assert "test-key" in lines[2] and "test-secret" in lines[2]
        async with aiohttp.ClientSession() as client, client.get(f"{rest_url}/v5/market/time") as r:
            assert (await r.json())["retCode"] == 0
    finally:
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 20) == 0
