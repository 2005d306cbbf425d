"""Partitioned input: routing rules, and the RabbitMQ topology and router that carry them out."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from om_core.messaging import DeadLetter, Message, PublishError, TopologyError, dlq_name
from om_core.messaging.base import ORIGINAL_QUEUE_HEADER
from om_core.messaging.partitions import (
    NO_SYMBOL,
    exchange_name,
    partition_queues,
    route_signal,
    route_update,
)
from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.router import PartitionRouter
from om_core.messaging.topology import ORDER_UPDATES_QUEUE, SIGNALS_QUEUE
from tests.conftest import wait_for
from tests.flow.bybit_messages import enveloped, order_object, stream
from tests.messaging.test_rabbitmq import list_queues, rabbitmqctl, vhost_of

# -- routing rules ------------------------------------------------------------------------


def test_a_signal_is_routed_whole_by_its_symbol() -> None:
    body = json.dumps({"signal_id": "s1", "symbol": "btcusdt", "side": "buy"}).encode()
    [routed] = route_signal(body, "s1")
    assert (routed.routing_key, routed.body, routed.message_id) == ("BTCUSDT", body, None)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"symbol": 5}', b'{"side": "buy"}'])
def test_a_signal_without_a_readable_symbol_still_goes_to_one_partition(body: bytes) -> None:
    # Its consumer dead-letters it with the reason, as without partitions.
    assert [(r.routing_key, r.body) for r in route_signal(body, "m")] == [(NO_SYMBOL, body)]


def _order(symbol: str, link: str) -> dict[str, Any]:
    return order_object(link_id=link, order_id=f"id-{link}", status="New", symbol=symbol)


@pytest.mark.parametrize("wrap", [lambda m: m, enveloped], ids=["stream", "gateway-envelope"])
def test_an_update_about_one_symbol_is_forwarded_unchanged(wrap: Any) -> None:
    body = json.dumps(wrap(stream(_order("ETHUSDT", "a"), _order("ETHUSDT", "b")))).encode()
    [routed] = route_update(body, "m1")
    assert (routed.routing_key, routed.body, routed.message_id) == ("ETHUSDT", body, None)


@pytest.mark.parametrize("wrap", [lambda m: m, enveloped], ids=["stream", "gateway-envelope"])
def test_an_update_about_several_symbols_is_split_per_symbol(wrap: Any) -> None:
    message = wrap(stream(_order("ETHUSDT", "a"), _order("BTCUSDT", "b"), _order("ETHUSDT", "c")))
    message_json = json.dumps(message).replace('"qty": "0.010"', '"qty": 0.010')
    parts = route_update(message_json.encode(), "m1")
    assert [(p.routing_key, p.message_id) for p in parts] == [
        ("BTCUSDT", "m1:BTCUSDT"),
        ("ETHUSDT", "m1:ETHUSDT"),
    ]
    decoded = {p.routing_key: json.loads(p.body) for p in parts}
    inner = {k: (v["data"] if "topic" in v else v["data"]["data"]) for k, v in decoded.items()}
    assert [o["orderLinkId"] for o in inner["ETHUSDT"]] == ["a", "c"]
    assert [o["orderLinkId"] for o in inner["BTCUSDT"]] == ["b"]
    # Everything else is kept as it was; a JSON number keeps its exact value (as a string,
    # the form Bybit uses).
    assert decoded["BTCUSDT"].keys() == message.keys()
    assert Decimal(inner["BTCUSDT"][0]["qty"]) == Decimal("0.010")


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "gateway.reconnected", "account": "main"}',
        b"{broken",
        json.dumps(stream({"orderId": "x", "orderStatus": "New"})).encode(),  # no symbol
    ],
)
def test_an_update_without_symbols_goes_whole_to_one_partition(body: bytes) -> None:
    assert [(r.routing_key, r.body) for r in route_update(body, "m")] == [(NO_SYMBOL, body)]


# -- on RabbitMQ ---------------------------------------------------------------------------

SYMBOLS = [f"S{n}USDT" for n in range(12)]


@pytest.mark.rabbitmq
async def test_partition_topology(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, partitions=3, delivery_limit=7)
    await bus.start()
    await bus.close()
    queues = await asyncio.to_thread(list_queues, amqp_url)
    for entry in (SIGNALS_QUEUE, ORDER_UPDATES_QUEUE):
        for name in partition_queues(entry, 3):
            assert queues[name]["arguments"] == {
                "x-queue-type": "quorum",
                "x-delivery-limit": 7,
                "x-single-active-consumer": True,
                "x-dead-letter-exchange": "",
                # Its dead letters join the entry queue's.
                "x-dead-letter-routing-key": dlq_name(entry),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
            assert dlq_name(name) not in queues
    vhost = vhost_of(amqp_url)
    exchanges = rabbitmqctl("list_exchanges", "-p", vhost, "name", "type", "durable")
    assert f"{exchange_name(SIGNALS_QUEUE)}\tx-consistent-hash\ttrue" in exchanges
    bindings = rabbitmqctl("list_bindings", "-p", vhost, "source_name", "destination_name")
    for name in partition_queues(SIGNALS_QUEUE, 3):
        assert f"{exchange_name(SIGNALS_QUEUE)}\t{name}" in bindings
    # The order-events queue is produced, not consumed: never partitioned.
    assert not any(q.startswith("order-manager.order_events.p") for q in queues)


@pytest.mark.rabbitmq
async def test_fewer_partitions_than_before_stop_start(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, partitions=4, queues=(SIGNALS_QUEUE,))
    await bus.start()
    await bus.close()
    with pytest.raises(TopologyError, match=r"'model-service\.trading_signals\.p3' exists"):
        await RabbitBus(amqp_url, partitions=3, queues=(SIGNALS_QUEUE,)).start()


async def _drain(bus: RabbitBus, queues: tuple[str, ...], count: int) -> dict[str, list[Message]]:
    got: dict[str, list[Message]] = defaultdict(list)
    consumers = []
    for queue in queues:

        async def take(message: Message, queue: str = queue) -> None:
            got[queue].append(message)

        consumers.append(await bus.consume(queue, take, prefetch=50))
    try:
        await wait_for(lambda: sum(map(len, got.values())) >= count, timeout=30)
    finally:
        for consumer in consumers:
            await consumer.stop(1)
    return got


@pytest.mark.rabbitmq
async def test_the_router_keeps_each_symbol_in_one_partition_in_publish_order(
    amqp_url: str,
) -> None:
    bus = RabbitBus(amqp_url, partitions=4)
    await bus.start()
    try:
        published = []
        for n in range(240):
            symbol = SYMBOLS[n % len(SYMBOLS)]
            body = json.dumps({"signal_id": f"sig-{n}", "symbol": symbol, "n": n}).encode()
            await bus.publish(SIGNALS_QUEUE, body, message_id=f"sig-{n}", headers={"h": n})
            published.append((symbol, n))
        router = PartitionRouter(bus, SIGNALS_QUEUE, prefetch=64, grace=2)
        await router.start()
        got = await _drain(bus, bus.partitioned[SIGNALS_QUEUE], len(published))
        await router.stop()

        assert await bus.message_count(SIGNALS_QUEUE) == 0
        seen: dict[str, list[int]] = defaultdict(list)
        home: dict[str, set[str]] = defaultdict(set)
        for queue, messages in got.items():
            for message in messages:
                data = json.loads(message.body)
                seen[data["symbol"]].append(data["n"])
                home[data["symbol"]].add(queue)
                assert message.message_id == data["signal_id"]
                assert message.headers == {"h": data["n"]}
                assert message.delivery_count == 0
        assert sum(map(len, seen.values())) == len(published)
        for symbol in SYMBOLS:
            assert len(home[symbol]) == 1, f"{symbol} went to {home[symbol]}"
            assert seen[symbol] == [n for s, n in published if s == symbol]
        # Twelve symbols over four partitions: the hash spreads them.
        assert len([q for q, ms in got.items() if ms]) >= 2
    finally:
        await bus.close()


@pytest.mark.rabbitmq
async def test_a_split_update_reaches_each_symbols_partition(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, partitions=4)
    await bus.start()
    try:
        body = json.dumps(stream(_order("ETHUSDT", "a"), _order("BTCUSDT", "b"))).encode()
        await bus.publish(ORDER_UPDATES_QUEUE, body, message_id="u1")
        router = PartitionRouter(bus, ORDER_UPDATES_QUEUE, prefetch=8, grace=2)
        await router.start()
        got = await _drain(bus, bus.partitioned[ORDER_UPDATES_QUEUE], 2)
        await router.stop()
        ids = sorted(m.message_id or "" for ms in got.values() for m in ms)
        assert ids == ["u1:BTCUSDT", "u1:ETHUSDT"]
    finally:
        await bus.close()


@pytest.mark.rabbitmq
async def test_a_partitions_dead_letters_join_the_entry_queues(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, partitions=2, queues=(SIGNALS_QUEUE,))
    await bus.start()
    try:
        partition = bus.partitioned[SIGNALS_QUEUE][1]
        await bus.publish(partition, b"{}", message_id="bad")

        async def reject(message: Message) -> None:
            raise DeadLetter("invalid signal: no symbol")

        consumer = await bus.consume(partition, reject, prefetch=1)
        dead = await bus.get(dlq_name(SIGNALS_QUEUE), timeout=10)
        await consumer.stop(1)
        assert dead is not None and dead.message_id == "bad"
        # Sent back to the entry queue, it is routed again.
        assert dead.headers[ORIGINAL_QUEUE_HEADER] == SIGNALS_QUEUE
    finally:
        await bus.close()


_ROUTER_PROCESS = """
import asyncio, sys
from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.router import PartitionRouter
from om_core.messaging.topology import SIGNALS_QUEUE

async def main():
    bus = RabbitBus(sys.argv[1], partitions=4)
    await bus.start()
    await PartitionRouter(bus, SIGNALS_QUEUE, prefetch=64, grace=0).start()
    print("routing", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.rabbitmq
async def test_a_router_killed_mid_flight_loses_nothing_and_keeps_first_copies_in_order(
    amqp_url: str,
) -> None:
    bus = RabbitBus(amqp_url, partitions=4)
    await bus.start()
    queues = bus.partitioned[SIGNALS_QUEUE]

    async def in_partitions() -> int:
        return sum([await bus.message_count(q) for q in queues])

    try:
        published = []
        for n in range(600):
            symbol = SYMBOLS[n % 3]
            body = json.dumps({"signal_id": f"s-{n}", "symbol": symbol, "n": n}).encode()
            await bus.publish(SIGNALS_QUEUE, body, message_id=f"s-{n}")
            published.append((symbol, n))
        # A router in a process of its own, killed with SIGKILL while messages are on their
        # way: published, maybe confirmed, not yet acknowledged.
        doomed = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ROUTER_PROCESS, amqp_url, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert doomed.stdout is not None
            assert (await asyncio.wait_for(doomed.stdout.readline(), 60)).strip() == b"routing"
            await wait_for(lambda: _above(in_partitions, 100), timeout=30)
        finally:
            doomed.kill()
            await doomed.wait()
        routed_before = await in_partitions()
        assert routed_before < len(published), "killed too late to prove anything"
        survivor = PartitionRouter(bus, SIGNALS_QUEUE, prefetch=64, grace=2)
        await survivor.start()

        async def all_there() -> bool:
            return await bus.message_count(SIGNALS_QUEUE) == 0 and (
                await in_partitions() >= len(published)
            )

        await wait_for(all_there, timeout=60)
        await survivor.stop()
        got = await _drain(bus, queues, await in_partitions())
    finally:
        await bus.close()
    seen: dict[str, list[int]] = defaultdict(list)
    for messages in got.values():
        for message in messages:
            data = json.loads(message.body)
            seen[data["symbol"]].append(data["n"])
    for symbol in SYMBOLS[:3]:
        expected = [n for s, n in published if s == symbol]
        firsts = list(dict.fromkeys(seen[symbol]))
        assert firsts == expected, symbol  # each at least once, first copies in order


async def _above(count: Callable[[], Awaitable[int]], threshold: int) -> bool:
    return await count() > threshold


@pytest.mark.rabbitmq
async def test_a_refused_publish_sends_that_message_and_all_after_it_again_in_order(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = RabbitBus(amqp_url, partitions=2, queues=(SIGNALS_QUEUE,))
    await bus.start()
    queues = bus.partitioned[SIGNALS_QUEUE]
    try:
        for n in range(40):
            body = json.dumps({"signal_id": f"s-{n}", "symbol": "BTCUSDT", "n": n}).encode()
            await bus.publish(SIGNALS_QUEUE, body, message_id=f"s-{n}")
        # The broker refuses one publish, once (a nack); the others go through.
        real = bus.publish_to_partition
        refused: list[str] = []

        async def once_refused(entry: str, key: str, body: bytes, properties: Any) -> None:
            if properties.message_id == "s-10" and not refused:
                refused.append("s-10")
                raise PublishError("the broker refused the message (test)")
            await real(entry, key, body, properties)

        monkeypatch.setattr(bus, "publish_to_partition", once_refused)
        router = PartitionRouter(bus, SIGNALS_QUEUE, prefetch=1, grace=2, retry_delay=0.1)
        await router.start()

        async def all_routed() -> bool:
            return await bus.message_count(SIGNALS_QUEUE) == 0 and refused == ["s-10"]

        await wait_for(all_routed, timeout=30)
        await router.stop()
        got = await _drain(bus, queues, sum([await bus.message_count(q) for q in queues]))
    finally:
        await bus.close()
    order = [json.loads(m.body)["n"] for ms in got.values() for m in ms]
    # With one message on its way at a time nothing passes the refused one: strictly in order.
    assert order == list(range(40))
