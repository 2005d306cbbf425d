"""The one-shot fault switches, seen through pybit and through raw requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from tests.conftest import wait_for
from tests.fake_bybit import FakeBybit
from tests.fake_bybit.conftest import call, pybit_session, signed_request

MARKET_BUY: dict[str, Any] = {
    "category": "linear",
    "symbol": "BTCUSDT",
    "side": "Buy",
    "orderType": "Market",
    "qty": "0.01",
}


async def find(session: HTTP, link: str) -> list[dict[str, Any]]:
    response = await call(
        session.get_open_orders, category="linear", symbol="BTCUSDT", orderLinkId=link
    )
    found: list[dict[str, Any]] = response["result"]["list"]
    return found


async def test_reject_next_create_answers_the_error_once(fake: FakeBybit, session: HTTP) -> None:
    fake.reject_next_create(110007, "ab not enough for new order")

    with pytest.raises(InvalidRequestError) as rejected:
        await call(session.place_order, **MARKET_BUY, orderLinkId="r-1")
    placed = await call(session.place_order, **MARKET_BUY, orderLinkId="r-1")

    assert (rejected.value.status_code, rejected.value.message) == (
        110007,
        "ab not enough for new order",
    )
    assert placed["retCode"] == 0
    assert [c["orderLinkId"] for c in fake.create_calls] == ["r-1", "r-1"]
    assert len(fake.exchange.orders_by_id) == 1


async def test_reject_after_ack_acknowledges_then_rejects(fake: FakeBybit, session: HTTP) -> None:
    fake.reject_next_create_after_ack("EC_NoEnoughQtyToFill")

    acknowledged = await call(session.place_order, **MARKET_BUY, orderLinkId="ra")

    assert acknowledged["retCode"] == 0
    [order] = await find(session, "ra")
    assert order["orderStatus"] == "Rejected"
    assert order["rejectReason"] == "EC_NoEnoughQtyToFill" and order["cumExecQty"] == "0.000"
    positions = await call(session.get_positions, category="linear", symbol="BTCUSDT")
    assert positions["result"]["list"][0]["size"] == "0.000"


async def test_timeout_with_execute_places_the_order_but_never_answers_in_time(
    fake: FakeBybit,
) -> None:
    session = pybit_session(fake, timeout=0.3)
    fake.timeout_next_create(execute=True, delay=5.0)

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        await call(session.place_order, **MARKET_BUY, orderLinkId="t-1")

    assert time.monotonic() - started < 3
    assert fake.orders["t-1"].status == "Filled"
    assert [o["orderStatus"] for o in await find(session, "t-1")] == ["Filled"]
    with pytest.raises(InvalidRequestError) as again:
        await call(session.place_order, **MARKET_BUY, orderLinkId="t-1")
    assert again.value.status_code == 110072


async def test_timeout_without_execute_places_nothing(fake: FakeBybit) -> None:
    session = pybit_session(fake, timeout=0.3)
    fake.timeout_next_create(execute=False, delay=5.0)

    with pytest.raises(requests.exceptions.ReadTimeout):
        await call(session.place_order, **MARKET_BUY, orderLinkId="t-2")

    assert await find(session, "t-2") == []
    assert len(fake.create_calls) == 1
    resent = await call(session.place_order, **MARKET_BUY, orderLinkId="t-2")
    assert resent["retCode"] == 0


async def test_timeout_that_closes_the_connection(fake: FakeBybit, session: HTTP) -> None:
    fake.timeout_next_create(execute=True, delay=0, close=True)

    with pytest.raises(requests.exceptions.ConnectionError):
        await call(session.place_order, **MARKET_BUY, orderLinkId="t-3")

    assert fake.orders["t-3"].status == "Filled"


async def test_held_answer_is_sent_when_the_client_waits_long_enough(fake: FakeBybit) -> None:
    session = pybit_session(fake, timeout=5)
    fake.timeout_next_create(execute=True, delay=0.2)

    response = await call(session.place_order, **MARKET_BUY, orderLinkId="t-4")

    assert response["result"]["orderLinkId"] == "t-4"


async def test_stopping_the_server_ends_a_hold(fake: FakeBybit) -> None:
    fake.timeout_next_create(execute=False, delay=60)
    session = pybit_session(fake, timeout=30)
    task = asyncio.ensure_future(call(session.place_order, **MARKET_BUY))
    await wait_for(lambda: fake.create_calls, timeout=5, message="the create to arrive")
    started = time.monotonic()
    await fake.stop()

    with pytest.raises(requests.exceptions.ConnectionError):
        await asyncio.wait_for(task, timeout=10)
    assert time.monotonic() - started < 5


async def test_fail_next_answers_a_gateway_page_and_places_nothing(
    fake: FakeBybit, session: HTTP
) -> None:
    fake.fail_next("/v5/order/create", 502)

    raw = await signed_request(fake, "POST", "/v5/order/create", body=b'{"category":"linear"}')
    fake.fail_next("/v5/order/create", 503)
    with pytest.raises(FailedRequestError) as failed:
        await call(session.place_order, **MARKET_BUY, orderLinkId="g-1")

    assert raw.status == 502
    assert raw.headers["Content-Type"].startswith("text/html")
    assert "X-Bapi-Limit" not in raw.headers  # the page is the gateway's, not Bybit's
    assert "502 Bad Gateway" in raw.text
    assert failed.value.status_code == 503
    assert fake.create_calls == [] and fake.orders == {}
    placed = await call(session.place_order, **MARKET_BUY, orderLinkId="g-1")
    assert placed["retCode"] == 0


async def test_fail_next_with_execute_places_the_order_behind_the_error(
    fake: FakeBybit, session: HTTP
) -> None:
    fake.fail_next("/v5/order/create", 504, execute=True)

    with pytest.raises(FailedRequestError) as failed:
        await call(session.place_order, **MARKET_BUY, orderLinkId="g-2")

    assert failed.value.status_code == 504
    assert fake.orders["g-2"].status == "Filled"


async def test_fail_next_applies_to_its_path_only(fake: FakeBybit, session: HTTP) -> None:
    fake.fail_next("/v5/order/realtime")

    placed = await call(session.place_order, **MARKET_BUY, orderLinkId="g-3")
    with pytest.raises(FailedRequestError):
        await find(session, "g-3")

    assert placed["retCode"] == 0
    assert len(await find(session, "g-3")) == 1


async def test_throttle_answers_10006_with_a_future_reset(fake: FakeBybit) -> None:
    fake.throttle("/v5/order/create", count=2, reset_ms=5000)

    answers = [
        await signed_request(fake, "POST", "/v5/order/create", body=b'{"category":"linear"}')
        for _ in range(3)
    ]

    now = int(time.time() * 1000)
    for throttled in answers[:2]:
        assert throttled.status == 200
        assert throttled.json()["retCode"] == 10006
        assert throttled.json()["retMsg"] == "Too many visits!"
        assert throttled.headers["X-Bapi-Limit-Status"] == "0"
        assert int(throttled.headers["X-Bapi-Limit-Reset-Timestamp"]) > now + 3000
    assert answers[2].json()["retCode"] == 10001  # through the limiter, to validation
    assert len(fake.create_calls) == 3 and fake.orders == {}


async def test_pybit_waits_out_a_throttle_and_resends(fake: FakeBybit, session: HTTP) -> None:
    fake.throttle("/v5/order/create", reset_ms=50)

    placed = await call(session.place_order, **MARKET_BUY, orderLinkId="th")

    assert placed["retCode"] == 0
    assert [c["orderLinkId"] for c in fake.create_calls] == ["th", "th"]
    assert len(fake.exchange.orders_by_id) == 1


async def test_unauthenticated_requests_are_not_throttled(fake: FakeBybit) -> None:
    fake.throttle("/v5/order/create")

    bad_key = await signed_request(
        fake, "POST", "/v5/order/create", body=b"{}", api_key="someone-else"
    )
    throttled = await signed_request(fake, "POST", "/v5/order/create", body=b"{}")

    assert bad_key.json()["retCode"] == 10003
    assert throttled.json()["retCode"] == 10006
