"""The WS-Gateway (plugins_builtin.bybit.gateway) against the fake Bybit stream (pybit
unmodified), publishing through a GatewayContext onto the in-process bus and a real RabbitMQ;
and what it publishes read back by the adapter's decode_stream."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from om_core.messaging.base import MessageBus
from om_core.messaging.memory import MemoryBus
from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.topology import ORDER_UPDATES_QUEUE
from om_plugins import (
    ExecutionReport,
    Fee,
    OrderReport,
    OrderStatus,
    StreamGap,
)
from plugins_builtin.bybit import BybitExchange, BybitPlugin
from plugins_builtin.bybit.gateway import RECONNECTED, Gateway, GatewayConfig
from tests.bybit.conftest import API_KEY, API_SECRET, CONTEXT, limit, settings_for
from tests.conftest import wait_for
from tests.fake_bybit import FakeBybit
from tests.support.gateway import bus_context

ACCOUNT = "test-account"


def config(fake: FakeBybit, **overrides: Any) -> GatewayConfig:
    values: dict[str, Any] = {
        "ws_url": fake.ws_private_url,
        "api_key": API_KEY,
        "api_secret": SecretStr(API_SECRET),
        "account": ACCOUNT,
        "ping_interval": 5.0,
        "ping_timeout": 2.0,
        "connect_timeout": 5.0,
        "backoff_initial": 0.1,
        "backoff_max": 1.0,
        "drain_grace": 2.0,
    }
    values.update(overrides)
    return GatewayConfig(**values)


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = MemoryBus(delivery_limit=3)
    await memory.start()
    yield memory
    await memory.close()


@pytest.fixture
async def gateway(fake: FakeBybit, bus: MemoryBus) -> AsyncIterator[Gateway]:
    running = Gateway(config(fake), bus_context(bus))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def take(
    bus: MessageBus, match: Callable[[dict[str, Any]], bool], *, timeout: float = 10.0
) -> tuple[dict[str, Any], bytes]:
    """The next message on ws-gateway.order that ``match``es (others are skipped)."""
    while True:
        message = await bus.get(ORDER_UPDATES_QUEUE, timeout=timeout)
        assert message is not None, "no matching message on ws-gateway.order in time"
        body = json.loads(message.body, parse_float=Decimal)
        if match(body):
            return body, message.body


def is_reconnected(body: dict[str, Any]) -> bool:
    return body.get("type") == RECONNECTED


def order_update(link: str, status: str) -> Callable[[dict[str, Any]], bool]:
    def match(body: dict[str, Any]) -> bool:
        data = body.get("data") or {}
        items = data.get("data") if data.get("topic") == "order" else None
        return any(i["orderLinkId"] == link and i["orderStatus"] == status for i in items or [])

    return match


async def test_connects_and_announces_itself(
    fake: FakeBybit, bus: MemoryBus, gateway: Gateway
) -> None:
    body, _ = await take(bus, is_reconnected)
    assert body["source"] == "ws-gateway" and body["account"] == ACCOUNT
    assert body["at"].endswith("+00:00")
    assert fake.ws_connections == 1
    assert gateway.connections == 1


async def test_order_and_fill_are_forwarded_in_the_envelope(
    fake: FakeBybit, bus: MemoryBus, gateway: Gateway
) -> None:
    await take(bus, is_reconnected)
    adapter = BybitExchange(settings_for(fake), CONTEXT)
    try:
        request = limit(qty="0.002")
        await adapter.place_order(request)
    finally:
        await adapter.close()
    new, _ = await take(bus, order_update(request.client_order_id, "New"))
    assert new["source"] == "ws-gateway" and new["account"] == ACCOUNT
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", new["received_at"])
    assert new["data"]["topic"] == "order"

    await fake.fill(request.client_order_id, price=Decimal("50000"))
    # Bybit pushes the trade, then the order's new state.
    execution, _ = await take(bus, lambda b: b.get("data", {}).get("topic") == "execution")
    [trade] = execution["data"]["data"]
    assert trade["orderLinkId"] == request.client_order_id and trade["execQty"] == "0.002"
    filled, _ = await take(bus, order_update(request.client_order_id, "Filled"))
    [item] = filled["data"]["data"]
    assert item["cumExecQty"] == "0.002"  # numbers stay Bybit's strings


async def test_data_is_forwarded_byte_for_byte(
    fake: FakeBybit, bus: MemoryBus, gateway: Gateway
) -> None:
    await take(bus, is_reconnected)
    await wait_for(lambda: fake.ws_connections == 1, message="an authenticated connection")
    message = {
        "id": "raw-1",
        "topic": "order",
        "creationTime": 1672364262444,
        "data": [{"orderLinkId": "raw", "price": "0.10", "qty": "1e-5", "unknownField": None}],
    }
    await fake.push_raw(message)
    body, raw_body = await take(bus, lambda b: b.get("data", {}).get("id") == "raw-1")
    sent = json.dumps(message).encode()
    assert raw_body.endswith(b', "data": ' + sent + b"}")
    assert body["data"]["data"][0]["price"] == "0.10"
    assert body["data"] == json.loads(sent)


async def test_reconnects_after_a_drop_and_announces_it(
    fake: FakeBybit, bus: MemoryBus, gateway: Gateway
) -> None:
    await take(bus, is_reconnected)
    await fake.drop_ws()
    await take(bus, is_reconnected)
    await wait_for(lambda: fake.ws_connections == 1, message="the gateway to reconnect")
    assert gateway.connections == 2
    # The new connection is subscribed again: stream messages flow.
    await fake.push_raw({"id": "after-drop", "topic": "order", "creationTime": 1, "data": []})
    await take(bus, lambda b: b.get("data", {}).get("id") == "after-drop")


async def test_auth_failure_is_logged_loudly_retried_with_backoff_and_keeps_secrets(
    fake: FakeBybit, bus: MemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "not-the-secret-but-still-secret-42"
    failing = Gateway(config(fake, api_secret=SecretStr(secret)), bus_context(bus))
    seen: list[float] = []
    with caplog.at_level(logging.DEBUG):
        await failing.start()
        try:
            for n in (1, 2, 3):
                await wait_for(lambda n=n: fake.auth_failures >= n, message=f"attempt {n}")
                seen.append(time.monotonic())
            # The server counts a failure before the gateway has read the answer and logged it.
            await wait_for(
                lambda: sum("refused" in r.getMessage() for r in caplog.records) >= 3,
                message="three refusals logged",
            )
        finally:
            await failing.stop()
    # Backoff 0.1 s then 0.2 s (± 20 % jitter) between attempts, not back to back.
    assert seen[1] - seen[0] >= 0.07 and seen[2] - seen[1] >= 0.15
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "refused" in r.message]
    assert len(errors) >= 3
    assert "OM_BYBIT_API_KEY" in errors[0].getMessage()
    delays = [
        float(m.group(1))
        for r in errors
        if (m := re.search(r"retrying in ([\d.]+)s", r.getMessage()))
    ]
    assert delays[:3] == [0.1, 0.2, 0.4]  # exponential
    assert fake.ws_connections == 0 and failing.connections == 0
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert secret not in logged


async def test_publishing_is_retried_until_the_broker_takes_the_message(
    fake: FakeBybit, caplog: pytest.LogCaptureFixture
) -> None:
    bus = MemoryBus(delivery_limit=3)  # not started: every publish fails
    gateway = Gateway(config(fake, queue_size=2), bus_context(bus))
    await gateway.start()
    try:
        await wait_for(lambda: fake.ws_connections == 1, message="a connection")
        await wait_for(lambda: len(gateway.inbox) == 1, message="the control message queued")
        for n in range(5):  # more than the queue holds: the stream waits, nothing is dropped
            await fake.push_raw({"id": f"m{n}", "topic": "order", "creationTime": n, "data": []})
        await wait_for(lambda: len(gateway.inbox) == 2, message="a full queue")
        await wait_for(
            lambda: any("queue full" in r.getMessage() for r in caplog.records),
            message="a loud queue-full log",
        )
        await bus.start()
        bodies = [(await take(bus, lambda b: True))[0] for _ in range(6)]
    finally:
        await gateway.stop()
        await bus.close()
    assert is_reconnected(bodies[0])
    assert [b["data"]["id"] for b in bodies[1:]] == ["m0", "m1", "m2", "m3", "m4"]
    assert any(r.levelno == logging.ERROR and "failed" in r.getMessage() for r in caplog.records)


async def test_the_plugins_gateway_reads_om_bybit_settings(fake: FakeBybit, bus: MemoryBus) -> None:
    plugin = BybitPlugin(settings=settings_for(fake, account_label="from-settings"))
    gateway = plugin.create_gateway(bus_context(bus))
    await gateway.start()
    try:
        body, _ = await take(bus, is_reconnected)
        assert body["account"] == "from-settings"
    finally:
        await gateway.stop()
    await wait_for(lambda: fake.ws_connections == 0, message="the connection closed")


async def test_what_it_publishes_the_adapter_decodes(
    fake: FakeBybit, bus: MemoryBus, gateway: Gateway, exchange: BybitExchange
) -> None:
    """Gateway envelope → decode_stream → neutral reports: a gap first, then the order's life,
    several executions of one message included."""
    _, raw = await take(bus, is_reconnected)
    [gap] = exchange.decode_stream(raw)
    assert isinstance(gap, StreamGap) and ACCOUNT in gap.reason

    request = limit(qty="0.004")
    await exchange.place_order(request)
    _, raw = await take(bus, order_update(request.client_order_id, "New"))
    [new] = exchange.decode_stream(raw)
    assert isinstance(new, OrderReport) and new.status is OrderStatus.NEW
    await fake.fill_in_parts(
        request.client_order_id,
        [(Decimal("0.001"), Decimal("50000")), (Decimal("0.003"), Decimal("49000"))],
    )
    _, raw = await take(bus, lambda b: b.get("data", {}).get("topic") == "execution")
    executions = exchange.decode_stream(raw)
    assert [type(e) for e in executions] == [ExecutionReport, ExecutionReport]
    assert [e.price for e in executions if isinstance(e, ExecutionReport)] == [50000, 49000]
    assert all(
        isinstance(e, ExecutionReport) and e.fee is not None and e.fee.currency == "USDT"
        for e in executions
    )
    _, raw = await take(bus, order_update(request.client_order_id, "Filled"))
    reports = exchange.decode_stream(raw)
    assert [r.status for r in reports if isinstance(r, OrderReport)] == [
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
    ]
    filled = reports[-1]
    assert isinstance(filled, OrderReport)
    assert filled.filled_value == 197 and filled.fees == (Fee(Decimal("0.0394"), "USDT"),)


@pytest.mark.rabbitmq
async def test_forwards_to_rabbitmq(fake: FakeBybit, amqp_url: str) -> None:
    rabbit = RabbitBus(amqp_url, queue_type="quorum", delivery_limit=5)
    await rabbit.start()
    gateway = Gateway(config(fake), bus_context(rabbit))
    await gateway.start()
    try:
        await take(rabbit, is_reconnected)
        await wait_for(lambda: fake.ws_connections == 1, message="an authenticated connection")
        message = {"id": "amqp-1", "topic": "execution", "creationTime": 2, "data": []}
        await fake.push_raw(message)
        body, raw_body = await take(rabbit, lambda b: b.get("data", {}).get("id") == "amqp-1")
        assert raw_body.endswith(b', "data": ' + json.dumps(message).encode() + b"}")
        assert body["source"] == "ws-gateway" and body["account"] == ACCOUNT
        await fake.drop_ws()
        await take(rabbit, is_reconnected)
    finally:
        await gateway.stop()
        await rabbit.close()
