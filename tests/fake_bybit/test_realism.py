"""What real Bybit does that the fake now does too: several items per stream message,
executions out of order, negative maker fees, spot fees in the base coin, hedge mode, inverse
contracts, the history's 24 h for unfilled orders, fee rates, rate limits and IP bans."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from websockets.asyncio.client import ClientConnection, connect

from tests.fake_bybit import FakeBybit
from tests.fake_bybit.conftest import API_KEY, API_SECRET, call, pybit_session, signed_request
from tests.fake_bybit.test_private_ws import authed, receive

D = Decimal


async def place(session: HTTP, **params: Any) -> dict[str, Any]:
    params.setdefault("category", "linear")
    params.setdefault("symbol", "BTCUSDT")
    response: dict[str, Any] = await call(session.place_order, **params)
    return response


async def subscribed(fake: FakeBybit, *topics: str) -> ClientConnection:
    ws = await connect(fake.ws_private_url)
    await authed(ws)
    await ws.send(json.dumps({"op": "subscribe", "args": list(topics)}))
    assert (await receive(ws))["success"] is True
    return ws


@pytest.fixture
async def orders_ws(fake: FakeBybit) -> AsyncIterator[ClientConnection]:
    ws = await subscribed(fake, "order", "execution")
    try:
        yield ws
    finally:
        await ws.close()


async def one_order(session: HTTP, link: str, **params: Any) -> dict[str, Any]:
    [order] = (
        await call(
            session.get_open_orders,
            category=params.get("category", "linear"),
            symbol=params.get("symbol", "BTCUSDT"),
            orderLinkId=link,
        )
    )["result"]["list"]
    return dict(order)


# -- the stream ---------------------------------------------------------------------------------


async def test_a_price_crossing_two_orders_pushes_two_items_per_message(
    fake: FakeBybit, session: HTTP, orders_ws: ClientConnection
) -> None:
    for link, price in (("a", "59000"), ("b", "58000")):
        await place(
            session, side="Buy", orderType="Limit", qty="0.01", price=price, orderLinkId=link
        )
        await receive(orders_ws)  # New

    await fake.set_price("BTCUSDT", D("57000"))

    executions, orders = await receive(orders_ws), await receive(orders_ws)
    assert executions["topic"] == "execution" and orders["topic"] == "order"
    assert [e["orderLinkId"] for e in executions["data"]] == ["a", "b"]
    assert [o["orderStatus"] for o in orders["data"]] == ["Filled", "Filled"]


async def test_several_fills_of_one_order_in_one_message(
    fake: FakeBybit, session: HTTP, orders_ws: ClientConnection
) -> None:
    await place(session, side="Buy", orderType="Limit", qty="0.02", price="59000", orderLinkId="p")
    await receive(orders_ws)

    await fake.fill_in_parts("p", [(D("0.01"), D("59000")), (D("0.01"), D("58990"))])

    executions, orders = await receive(orders_ws), await receive(orders_ws)
    assert [(e["execQty"], e["execPrice"]) for e in executions["data"]] == [
        ("0.01", "59000"),
        ("0.01", "58990"),
    ]
    assert [o["orderStatus"] for o in orders["data"]] == ["PartiallyFilled", "Filled"]


async def test_held_executions_arrive_after_the_order_newest_first(
    fake: FakeBybit, session: HTTP, orders_ws: ClientConnection
) -> None:
    await place(
        session,
        side="Buy",
        orderType="Limit",
        qty="2",
        price="1100",
        symbol="ETHUSDT",
        orderLinkId="ooo",
    )
    await receive(orders_ws)
    fake.hold_executions()

    await fake.fill("ooo", D("1"), D("1010"))
    await fake.fill("ooo", D("1"), D("1090"))
    partially, filled = await receive(orders_ws), await receive(orders_ws)
    fake.release_executions()
    late = await receive(orders_ws)

    assert partially["topic"] == filled["topic"] == "order"
    assert filled["data"][0]["cumExecValue"] == "2100" and filled["data"][0]["avgPrice"] == "1050"
    assert late["topic"] == "execution"
    assert [e["execPrice"] for e in late["data"]] == ["1090", "1010"]


async def test_the_out_of_order_switch_sends_executions_last_newest_first(
    fake: FakeBybit, session: HTTP, orders_ws: ClientConnection
) -> None:
    fake.executions_out_of_order = True
    await place(session, side="Buy", orderType="Limit", qty="0.02", price="59000", orderLinkId="x")
    await receive(orders_ws)

    await fake.fill_in_parts("x", [(D("0.01"), D("59000")), (D("0.01"), D("58990"))])

    orders, executions = await receive(orders_ws), await receive(orders_ws)
    assert orders["topic"] == "order" and orders["data"][-1]["orderStatus"] == "Filled"
    assert executions["topic"] == "execution"
    assert [e["execPrice"] for e in executions["data"]] == ["58990", "59000"]


# -- fees ---------------------------------------------------------------------------------------


async def test_negative_maker_fee_is_a_rebate(fake: FakeBybit, session: HTTP) -> None:
    fake.set_fee_rates("linear", taker=D("0.00055"), maker=D("-0.0001"))
    await place(session, side="Buy", orderType="Limit", qty="0.01", price="59000", orderLinkId="r")
    before = fake.exchange.wallet["USDT"]

    await fake.fill("r")

    order = await one_order(session, "r")
    assert order["cumExecFee"] == "-0.059" and order["cumFeeDetail"] == {"USDT": "-0.059"}
    [execution] = (await call(session.get_executions, category="linear", orderLinkId="r"))[
        "result"
    ]["list"]
    assert execution["execFee"] == "-0.059" and execution["feeRate"] == "-0.0001"
    assert execution["feeCurrency"] == ""  # the docs' linear REST example leaves it empty
    assert fake.exchange.wallet["USDT"] == before + D("0.059")
    rates = await call(session.get_fee_rates, category="linear", symbol="BTCUSDT")
    assert rates["result"]["list"] == [
        {"symbol": "BTCUSDT", "takerFeeRate": "0.00055", "makerFeeRate": "-0.0001"}
    ]


async def test_spot_buy_pays_in_base_and_a_rebate_comes_in_quote(
    fake: FakeBybit, session: HTTP
) -> None:
    fake.set_fee_rates("spot", taker=D("0.001"), maker=D("-0.0002"))
    # Crosses the market: fills at once, as taker, paying in the BTC it receives.
    await place(
        session,
        category="spot",
        side="Buy",
        orderType="Limit",
        qty="0.02",
        price="60000",
        orderLinkId="s",
    )
    order = await one_order(session, "s", category="spot")
    assert order["cumExecQty"] == "0.02" and order["cumFeeDetail"] == {"BTC": "0.00002"}

    await place(
        session,
        category="spot",
        side="Buy",
        orderType="Limit",
        qty="0.01",
        price="59000",
        orderLinkId="m",
    )
    await fake.fill("m")
    maker = await one_order(session, "m", category="spot")
    assert maker["cumFeeDetail"] == {"USDT": "-0.118"}  # 590 * -0.02 %, received in USDT
    [execution] = (await call(session.get_executions, category="spot", orderLinkId="m"))["result"][
        "list"
    ]
    assert execution["feeCurrency"] == "USDT" and execution["execFee"] == "-0.118"
    balances = {
        c["coin"]: c["walletBalance"]
        for c in (await call(session.get_wallet_balance, accountType="UNIFIED"))["result"]["list"][
            0
        ]["coin"]
    }
    assert balances["BTC"] == "0.02998"  # 0.02 - 0.00002 + 0.01


async def test_quote_coin_market_buy(fake: FakeBybit, session: HTTP) -> None:
    await place(
        session,
        category="spot",
        side="Buy",
        orderType="Market",
        qty="100",
        marketUnit="quoteCoin",
        orderLinkId="q",
    )
    order = await one_order(session, "q", category="spot")
    assert order["marketUnit"] == "quoteCoin" and order["qty"] == "100"
    assert order["cumExecQty"] == "0.001666" and order["cumFeeDetail"] == {"BTC": "0.000001666"}


# -- hedge mode ---------------------------------------------------------------------------------


async def test_hedge_mode_needs_a_position_side_and_holds_both(
    fake: FakeBybit, session: HTTP
) -> None:
    fake.set_hedge_mode(True)
    with pytest.raises(InvalidRequestError) as one_way:
        await place(session, side="Buy", orderType="Market", qty="0.01", positionIdx=0)
    assert one_way.value.status_code == 10001
    assert one_way.value.message == "position idx not match position mode"

    await place(session, side="Buy", orderType="Market", qty="0.03", positionIdx=1)
    await place(session, side="Sell", orderType="Market", qty="0.01", positionIdx=2)
    await place(
        session, side="Sell", orderType="Market", qty="0.01", positionIdx=1, reduceOnly=True
    )

    listed = (await call(session.get_positions, category="linear", symbol="BTCUSDT"))["result"]
    sides = {p["positionIdx"]: (p["side"], p["size"]) for p in listed["list"]}
    assert sides == {1: ("Buy", "0.020"), 2: ("Sell", "0.010")}
    with pytest.raises(InvalidRequestError) as too_much:
        await place(
            session,
            side="Buy",
            orderType="Market",
            qty="0.01",
            positionIdx=2,
            reduceOnly=True,
            symbol="ETHUSDT",
        )
    assert too_much.value.status_code == 110017

    fake.set_hedge_mode(False)
    with pytest.raises(InvalidRequestError) as hedge_idx:
        await place(session, side="Buy", orderType="Market", qty="0.01", positionIdx=1)
    assert hedge_idx.value.message == "position idx not match position mode"


# -- inverse ------------------------------------------------------------------------------------


async def test_inverse_counts_contracts_and_settles_in_the_base_coin() -> None:
    async with FakeBybit(api_key=API_KEY, api_secret=API_SECRET, coins={"BTC": D("1")}) as fake:
        inverse = pybit_session(fake)
        await place(
            inverse,
            category="inverse",
            symbol="BTCUSD",
            side="Buy",
            orderType="Market",
            qty="600",
            orderLinkId="inv",
        )
        order = await one_order(inverse, "inv", category="inverse", symbol="BTCUSD")
        assert order["qty"] == "600" and order["cumExecQty"] == "600"
        assert order["cumExecValue"] == "0.01" and order["avgPrice"] == "60000"
        assert order["cumFeeDetail"] == {"BTC": "0.0000055"}
        await fake.set_price("BTCUSD", D("66000"))
        [position] = (await call(inverse.get_positions, category="inverse", symbol="BTCUSD"))[
            "result"
        ]["list"]
        assert position["size"] == "600" and position["positionValue"] == "0.01"
        await place(
            inverse,
            category="inverse",
            symbol="BTCUSD",
            side="Sell",
            orderType="Market",
            qty="600",
            reduceOnly=True,
        )
        # 600 contracts × (1/60000 − 1/66000) BTC, less two taker fees in BTC.
        pnl = D(600) * (1 / D(60000) - 1 / D(66000))
        fees = D("0.0000055") + D(600) / D(66000) * D("0.00055")
        assert abs(fake.exchange.wallet["BTC"] - (D(1) + pnl - fees)) < D("1e-18")


# -- history, limits, bans ------------------------------------------------------------------------


async def test_unfilled_cancelled_orders_leave_the_history_after_24_hours(
    fake: FakeBybit, session: HTTP
) -> None:
    await place(session, side="Buy", orderType="Limit", qty="0.01", price="50000", orderLinkId="c")
    await call(session.cancel_order, category="linear", symbol="BTCUSDT", orderLinkId="c")
    await place(session, side="Buy", orderType="Market", qty="0.01", orderLinkId="f")

    fake.advance_clock(23 * 3600)
    history = await call(session.get_order_history, category="linear")
    assert {o["orderLinkId"] for o in history["result"]["list"]} == {"c", "f"}
    fake.advance_clock(2 * 3600)
    history = await call(session.get_order_history, category="linear")
    assert [o["orderLinkId"] for o in history["result"]["list"]] == ["f"]


def create_body(link: str, category: str = "linear") -> bytes:
    return json.dumps(
        {
            "category": category,
            "symbol": "BTCUSDT",
            "side": "Buy",
            "orderType": "Limit",
            "qty": "0.001",
            "price": "50000",
            "orderLinkId": link,
        }
    ).encode()


async def test_rate_limits_are_on_by_default(fake: FakeBybit) -> None:
    # Sent at once: all arrive within Bybit's one-second window.
    answers = await asyncio.gather(
        *(
            signed_request(fake, "POST", "/v5/order/create", body=create_body(f"burst-{n}"))
            for n in range(12)
        )
    )
    codes = [a.json()["retCode"] for a in answers]
    assert sorted(codes) == [0] * 10 + [10006, 10006]
    throttled = next(a for a in answers if a.json()["retCode"] == 10006)
    assert throttled.json()["retMsg"] == "Too many visits!"
    assert throttled.headers["X-Bapi-Limit-Status"] == "0"
    assert int(throttled.headers["X-Bapi-Limit-Reset-Timestamp"]) > time.time() * 1000
    assert len(fake.orders) == 10
    # Spot has its own limit.
    spot = await signed_request(
        fake, "POST", "/v5/order/create", body=create_body("spot-1", "spot")
    )
    assert spot.json()["retCode"] == 0


async def test_rate_limits_can_be_switched_off(fake: FakeBybit) -> None:
    fake.rate_limits = False
    for n in range(15):
        body = json.dumps(
            {
                "category": "linear",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "0.001",
                "price": "50000",
                "orderLinkId": f"free-{n}",
            }
        ).encode()
        assert (await signed_request(fake, "POST", "/v5/order/create", body=body)).json()[
            "retCode"
        ] == 0


async def test_ip_ban_answers_403_to_everything_until_lifted(
    fake: FakeBybit, session: HTTP
) -> None:
    fake.ban_ip(600)
    with pytest.raises(FailedRequestError) as banned:
        await place(session, side="Buy", orderType="Market", qty="0.01")
    assert banned.value.status_code == 403
    with pytest.raises(FailedRequestError):
        await call(session.get_tickers, category="linear")
    assert fake.banned_requests == 2 and fake.orders == {} and fake.create_calls == []

    fake.lift_ban()
    await place(session, side="Buy", orderType="Market", qty="0.01", orderLinkId="after")
    assert "after" in fake.orders

    fake.ban_ip(0.05, status=429)
    with pytest.raises(FailedRequestError) as limited:
        await call(session.get_tickers, category="linear")
    assert limited.value.status_code == 429
