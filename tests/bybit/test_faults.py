"""Every failure the fake server can produce ends in the right typed outcome, and no order is
ever sent twice behind the engine's back (the ``fake`` fixture checks ``create_calls``)."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import pytest

from om_plugins import (
    Category,
    DuplicateClientOrderId,
    ExchangeAuthError,
    ExchangeRejected,
    ExchangeUnavailable,
    OrderStatus,
    OutcomeUnknown,
    ReasonCode,
    Side,
)
from plugins_builtin.bybit import BybitExchange
from tests.bybit.conftest import API_SECRET, CONTEXT, limit, order, settings_for
from tests.fake_bybit import FakeBybit


def sent(fake: FakeBybit, link: str) -> int:
    return sum(1 for body in fake.create_calls if body.get("orderLinkId") == link)


async def test_insufficient_balance_is_a_definitive_rejection(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    fake.reject_next_create(110007, "ab not enough for new order")
    request = order()
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(request)
    assert raised.value.code == "110007"
    assert raised.value.message == "ab not enough for new order"
    assert raised.value.reason_code == ReasonCode.INSUFFICIENT_BALANCE
    assert sent(fake, request.client_order_id) == 1
    assert request.client_order_id not in fake.orders


async def test_real_rule_violations_are_rejections(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(limit(price="1000", qty="0.001"))  # 1 USDT < 5 minimum
    assert raised.value.code == "110094"
    assert raised.value.reason_code == ReasonCode.MIN_NOTIONAL
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(order(qty="2000"))  # 2000 BTC: far beyond the balance
    assert raised.value.code in {"10001", "110007"}
    assert raised.value.reason_code in {ReasonCode.INVALID_QTY, ReasonCode.INSUFFICIENT_BALANCE}
    with pytest.raises(ExchangeRejected) as raised:
        await exchange.place_order(order(qty="0.010", side=Side.SELL, reduce_only=True))
    assert raised.value.reason_code == ReasonCode.REDUCE_ONLY_REJECTED


async def test_timeout_after_execution_is_unknown_and_the_order_is_found(
    fake: FakeBybit,
) -> None:
    adapter = BybitExchange(settings_for(fake, request_timeout_s=0.5), CONTEXT)
    try:
        fake.timeout_next_create(execute=True, delay=5.0)
        request = limit()
        with pytest.raises(OutcomeUnknown):
            await adapter.place_order(request)
        found = await adapter.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
        assert found is not None and found.status is OrderStatus.NEW
        assert sent(fake, request.client_order_id) == 1
    finally:
        await adapter.close()


async def test_timeout_before_execution_is_unknown_and_the_order_is_absent(
    fake: FakeBybit,
) -> None:
    adapter = BybitExchange(settings_for(fake, request_timeout_s=0.5), CONTEXT)
    try:
        fake.timeout_next_create(execute=False, delay=5.0)
        request = limit()
        with pytest.raises(OutcomeUnknown):
            await adapter.place_order(request)
        assert await adapter.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id) is None
        assert sent(fake, request.client_order_id) == 1
    finally:
        await adapter.close()


async def test_connection_dropped_after_execution_is_unknown(fake: FakeBybit) -> None:
    adapter = BybitExchange(settings_for(fake, request_timeout_s=5.0), CONTEXT)
    try:
        fake.timeout_next_create(execute=True, delay=0.05, close=True)
        request = limit()
        with pytest.raises(OutcomeUnknown):
            await adapter.place_order(request)
        assert await adapter.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    finally:
        await adapter.close()


async def test_bad_gateway_is_unknown(fake: FakeBybit, exchange: BybitExchange) -> None:
    fake.fail_next("/v5/order/create", 502)
    request = limit()
    with pytest.raises(OutcomeUnknown) as raised:
        await exchange.place_order(request)
    assert raised.value.code == "502"
    assert await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id) is None

    fake.fail_next("/v5/order/create", 502, execute=True)
    executed = limit()
    with pytest.raises(OutcomeUnknown):
        await exchange.place_order(executed)
    assert await exchange.get_order(Category.LINEAR, "BTCUSDT", executed.client_order_id)


async def test_throttle_is_unavailable_with_retry_after_and_never_resent(
    fake: FakeBybit, exchange: BybitExchange, resent: set[str]
) -> None:
    fake.throttle("/v5/order/create", count=1, reset_ms=400)
    request = limit()
    resent.add(request.client_order_id)  # sent again below, as the engine would
    with pytest.raises(ExchangeUnavailable) as raised:
        await exchange.place_order(request)
    assert raised.value.code == "10006" and raised.value.reason_code == ReasonCode.RATE_LIMITED
    assert raised.value.retry_after is not None and 0 < raised.value.retry_after <= 0.5
    assert sent(fake, request.client_order_id) == 1  # pybit did not re-send it
    assert request.client_order_id not in fake.orders
    assert exchange.rate_limit_headroom()["create.linear"] == 0  # blocked until the reset

    # The engine retries an unavailable create; the limiter waits for the reset first.
    started = time.monotonic()
    await exchange.place_order(request)
    assert time.monotonic() - started >= 0.2
    assert request.client_order_id in fake.orders


async def test_reads_retry_a_throttle_themselves(fake: FakeBybit, exchange: BybitExchange) -> None:
    fake.throttle("/v5/position/list", count=2, reset_ms=100)
    assert await exchange.get_leverage(Category.LINEAR, "BTCUSDT") == Decimal(10)


async def test_bybits_own_rate_limit_is_waited_for_not_hammered(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    """The fake enforces Bybit's 10 creates per second; the client keeps under it."""
    results = await asyncio.gather(*(exchange.place_order(limit(qty="0.001")) for _ in range(12)))
    assert len(results) == 12 and len(fake.create_calls) == 12


async def test_an_ip_ban_stops_every_request_for_a_minute_or_more(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    clock = Clock()
    exchange.ban.clock = clock
    fake.ban_ip(600)
    request = limit()
    with pytest.raises(ExchangeUnavailable) as raised:
        await exchange.place_order(request)
    assert raised.value.code == "403" and raised.value.reason_code == ReasonCode.IP_BANNED
    assert raised.value.retry_after is not None and 60 <= raised.value.retry_after <= 75
    assert not isinstance(raised.value, OutcomeUnknown)  # refused before it was processed
    assert fake.banned_requests == 1
    assert exchange.ban_reason == "IP_BANNED" and exchange.ban_until is not None

    # During the ban nothing at all is sent: every call fails at once, reads included.
    started = time.monotonic()
    for call in (
        exchange.place_order(limit()),
        exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id),
        exchange.get_balance("USDT"),
        exchange.list_positions(Category.LINEAR),
    ):
        with pytest.raises(ExchangeUnavailable) as during:
            await call
        assert during.value.reason_code == ReasonCode.IP_BANNED
        assert during.value.retry_after is not None and during.value.retry_after >= 59
    assert time.monotonic() - started < 1.0
    assert fake.banned_requests == 1

    # Still banned at Bybit when the pause ends: the probe is one request, the next pause longer.
    clock.now += 76
    with pytest.raises(ExchangeUnavailable) as probe:
        await exchange.get_balance("USDT")
    assert probe.value.retry_after is not None and probe.value.retry_after >= 120
    assert fake.banned_requests == 2

    fake.lift_ban()
    clock.now += 151
    assert (await exchange.get_balance("USDT")).coin == "USDT"
    assert exchange.ban_state is None and exchange.ban_reason == ""


async def test_http_429_pauses_too(fake: FakeBybit, exchange: BybitExchange) -> None:
    exchange.ban.clock = Clock()
    fake.ban_ip(600, status=429)
    with pytest.raises(ExchangeUnavailable) as raised:
        await exchange.get_balance("USDT")
    assert raised.value.reason_code == ReasonCode.RATE_LIMITED
    assert raised.value.retry_after is not None and raised.value.retry_after >= 60
    assert fake.banned_requests == 1  # a read is not retried into a ban


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


async def test_duplicate_link_id(
    fake: FakeBybit, exchange: BybitExchange, resent: set[str]
) -> None:
    request = limit()
    resent.add(request.client_order_id)
    await exchange.place_order(request)
    with pytest.raises(DuplicateClientOrderId) as raised:
        await exchange.place_order(request)
    assert raised.value.code == "110072"
    spot = order(category=Category.SPOT, qty="0.001")
    resent.add(spot.client_order_id)
    await exchange.place_order(spot)
    with pytest.raises(DuplicateClientOrderId) as raised:
        await exchange.place_order(spot)
    assert raised.value.code == "170141"


async def test_wrong_secret_is_an_auth_error_and_the_secret_is_never_logged(
    fake: FakeBybit, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wrong-but-secret-0123456789"
    adapter = BybitExchange(settings_for(fake, api_secret=secret), CONTEXT)
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(ExchangeAuthError) as raised:
                await adapter.place_order(limit())
            assert raised.value.code == "10004" and raised.value.reason_code == ReasonCode.AUTH
            with pytest.raises(ExchangeAuthError):
                await adapter.get_balance("USDT")
    finally:
        await adapter.close()
    assert fake.create_calls == []  # refused before it was ever a create
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert secret not in logged and API_SECRET not in logged
    assert secret not in str(raised.value)


async def test_wrong_key_is_an_auth_error(fake: FakeBybit) -> None:
    adapter = BybitExchange(settings_for(fake, api_key="nobody"), CONTEXT)
    try:
        with pytest.raises(ExchangeAuthError) as raised:
            await adapter.get_order(Category.LINEAR, "BTCUSDT", "x")
        assert raised.value.code == "10003"
    finally:
        await adapter.close()


async def test_clock_outside_the_receive_window_is_an_auth_error(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    fake.clock_skew_ms = 60_000
    with pytest.raises(ExchangeAuthError) as raised:
        await exchange.place_order(limit())
    assert raised.value.code == "10002"
    assert fake.create_calls == []


async def test_connection_refused_is_unavailable(fake: FakeBybit) -> None:
    adapter = BybitExchange(settings_for(fake, base_url="http://127.0.0.1:9"), CONTEXT)
    try:
        with pytest.raises(ExchangeUnavailable) as raised:
            await adapter.place_order(limit())
        assert not isinstance(raised.value, OutcomeUnknown)
    finally:
        await adapter.close()


async def test_the_event_loop_keeps_running_while_pybit_waits(fake: FakeBybit) -> None:
    adapter = BybitExchange(settings_for(fake, request_timeout_s=1.0), CONTEXT)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        fake.timeout_next_create(execute=False, delay=5.0)
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown):
            await adapter.place_order(limit())
        waited = time.monotonic() - started
    finally:
        ticker.cancel()
        await adapter.close()
    assert waited >= 0.9
    # A blocked loop would not have ticked at all while pybit waited for its timeout.
    assert ticks >= waited / 0.01 / 4


async def test_thirty_creates_at_ten_per_second_take_two_seconds_without_a_10006(
    fake: FakeBybit,
) -> None:
    adapter = BybitExchange(settings_for(fake, rate_limit_create_linear=10), CONTEXT)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(adapter.place_order(limit(qty="0.001")) for _ in range(30)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
    finally:
        await adapter.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert len(fake.create_calls) == 30
    assert elapsed >= 1.9


async def test_get_order_never_says_none_when_a_lookup_failed(
    fake: FakeBybit, exchange: BybitExchange
) -> None:
    request = limit()
    await exchange.place_order(request)
    fake.forget_from_realtime(request.client_order_id)
    for _ in range(3):  # as many as a read's attempts
        fake.fail_next("/v5/order/history", 502)
    with pytest.raises(ExchangeUnavailable):
        await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    for _ in range(3):
        fake.fail_next("/v5/execution/list", 503)
    with pytest.raises(ExchangeUnavailable):
        await exchange.get_order(Category.LINEAR, "BTCUSDT", "never-placed")
    # A single failure is retried by the read itself.
    fake.fail_next("/v5/order/history", 502)
    found = await exchange.get_order(Category.LINEAR, "BTCUSDT", request.client_order_id)
    assert found is not None and found.status is OrderStatus.NEW
