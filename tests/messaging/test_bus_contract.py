"""One contract, every bus: the in-process one and RabbitMQ with quorum and classic queues.

Each RabbitMQ run gets a fresh virtual host with the production queue names. "Nothing is
left in the queue" is checked by publishing a marker and reading it back as the very next
message: a message still in the queue, or being returned to it, would come first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from om_core.messaging import DeadLetter, Message, MessageBus, PublishError, dlq_name
from om_core.messaging.base import ERROR_HEADER, ORIGINAL_QUEUE_HEADER
from om_core.messaging.memory import MemoryBroker, MemoryBus
from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.topology import SIGNALS_QUEUE
from tests.conftest import wait_for

QUEUE = SIGNALS_QUEUE
DLQ = dlq_name(QUEUE)

BUS_KINDS = [
    "memory",
    pytest.param("rabbitmq-quorum", marks=pytest.mark.rabbitmq),
    pytest.param("rabbitmq-classic", marks=pytest.mark.rabbitmq),
]

Build = Callable[[int], MessageBus]


@dataclass
class NewBus:
    """Starts buses on one broker (one virtual host); the fixture closes them."""

    build: Build
    started: list[MessageBus] = field(default_factory=list)

    async def __call__(self, *, delivery_limit: int = 3) -> MessageBus:
        bus = self.build(delivery_limit)
        await bus.start()
        self.started.append(bus)
        return bus


@pytest.fixture(params=BUS_KINDS)
def build_bus(request: pytest.FixtureRequest) -> Build:
    if request.param == "memory":
        broker = MemoryBroker()
        return lambda limit: MemoryBus(delivery_limit=limit, broker=broker)
    url = request.getfixturevalue("amqp_url")
    queue_type = request.param.removeprefix("rabbitmq-")
    return lambda limit: RabbitBus(url, queue_type=queue_type, delivery_limit=limit)


@pytest.fixture
async def new_bus(build_bus: Build) -> AsyncIterator[NewBus]:
    factory = NewBus(build_bus)
    yield factory
    for bus in reversed(factory.started):
        await bus.close()


@pytest.fixture
async def bus(new_bus: NewBus) -> MessageBus:
    return await new_bus()


async def assert_nothing_left(bus: MessageBus, queue: str = QUEUE) -> None:
    await bus.publish(queue, b"marker", message_id="marker")
    following = await bus.get(queue, timeout=10)
    assert following is not None
    assert following.body == b"marker", f"left in {queue}: {following}"


async def test_consumer_receives_body_and_properties(bus: MessageBus) -> None:
    received: list[Message] = []

    async def handler(message: Message) -> None:
        received.append(message)

    consumer = await bus.consume(QUEUE, handler, prefetch=1)
    await bus.publish(
        QUEUE,
        b'{"symbol": "BTCUSDT", "qty": "0.010"}',
        message_id="signal-1",
        type="trading_signal.v1",
        correlation_id="corr-1",
        headers={"x-source": "model-7", "attempt": 2},
        content_type="application/json",
    )
    await bus.publish(QUEUE, b"plain")
    await wait_for(lambda: len(received) == 2, message="two deliveries")
    await consumer.stop(grace=5)

    first, second = received
    assert first.body == b'{"symbol": "BTCUSDT", "qty": "0.010"}'
    assert first.message_id == "signal-1"
    assert first.type == "trading_signal.v1"
    assert first.correlation_id == "corr-1"
    assert first.content_type == "application/json"
    assert dict(first.headers) == {"x-source": "model-7", "attempt": 2}
    assert (first.redelivered, first.delivery_count) == (False, 0)
    # Defaults: JSON, and a generated id so consumers can always de-duplicate.
    assert second.content_type == "application/json"
    assert second.message_id
    assert second.message_id != first.message_id
    assert (second.type, second.correlation_id, dict(second.headers)) == (None, None, {})


async def test_acknowledged_message_is_not_delivered_again(bus: MessageBus) -> None:
    handled: list[Message] = []

    async def handler(message: Message) -> None:
        handled.append(message)

    consumer = await bus.consume(QUEUE, handler, prefetch=1)
    await bus.publish(QUEUE, b"once", message_id="once")
    await wait_for(lambda: handled, message="the delivery")
    await consumer.stop(grace=5)

    later: list[Message] = []

    async def late_handler(message: Message) -> None:
        later.append(message)

    await bus.publish(QUEUE, b"marker", message_id="marker")
    second_consumer = await bus.consume(QUEUE, late_handler, prefetch=1)
    await wait_for(lambda: later, message="the marker")
    await second_consumer.stop(grace=5)
    assert [m.message_id for m in later] == ["marker"]
    assert [m.message_id for m in handled] == ["once"]


async def test_dead_letter_keeps_the_message_and_consumer_goes_on(bus: MessageBus) -> None:
    handled: list[bytes] = []

    async def handler(message: Message) -> None:
        if message.body == b"poison":
            raise DeadLetter("qty is not a number")
        handled.append(message.body)

    consumer = await bus.consume(QUEUE, handler, prefetch=1)
    await bus.publish(
        QUEUE,
        b"poison",
        message_id="poison-1",
        type="trading_signal.v1",
        correlation_id="corr-9",
        headers={"x-source": "model-7"},
    )
    await bus.publish(QUEUE, b"good", message_id="good-1")
    await wait_for(lambda: handled == [b"good"], message="the next message handled")
    await consumer.stop(grace=5)

    dead = await bus.get(DLQ, timeout=10)
    assert dead is not None
    assert dead.body == b"poison"
    assert (dead.message_id, dead.type, dead.correlation_id, dead.content_type) == (
        "poison-1",
        "trading_signal.v1",
        "corr-9",
        "application/json",
    )
    assert dict(dead.headers) == {
        "x-source": "model-7",
        ERROR_HEADER: "qty is not a number",
        ORIGINAL_QUEUE_HEADER: QUEUE,
    }
    assert await bus.message_count(DLQ) == 0
    await assert_nothing_left(bus)


async def test_failure_redelivers_with_a_count_until_the_handler_succeeds(
    new_bus: NewBus,
) -> None:
    bus = await new_bus(delivery_limit=5)
    deliveries: list[tuple[bool, int]] = []

    async def handler(message: Message) -> None:
        deliveries.append((message.redelivered, message.delivery_count))
        if len(deliveries) < 3:
            raise ConnectionError("database is down")

    consumer = await bus.consume(QUEUE, handler, prefetch=1)
    await bus.publish(QUEUE, b"retry me", message_id="retry-1", headers={"k": "v"})
    await wait_for(lambda: len(deliveries) == 3, message="three deliveries")
    await consumer.stop(grace=5)

    assert deliveries == [(False, 0), (True, 1), (True, 2)]
    assert await bus.message_count(DLQ) == 0
    await assert_nothing_left(bus)


async def test_a_message_that_always_fails_is_dead_lettered_at_the_limit(
    new_bus: NewBus,
) -> None:
    bus = await new_bus(delivery_limit=3)
    counts: list[int] = []
    bodies: list[tuple[bytes, dict[str, object]]] = []

    async def handler(message: Message) -> None:
        counts.append(message.delivery_count)
        bodies.append((message.body, dict(message.headers)))
        raise ValueError("price is negative")

    consumer = await bus.consume(QUEUE, handler, prefetch=1)
    await bus.publish(QUEUE, b"bad", message_id="bad-1", headers={"k": "v"})
    dead = await bus.get(DLQ, timeout=15)
    await consumer.stop(grace=5)

    assert dead is not None
    assert counts == [0, 1, 2]
    # Every redelivery carried the message as published.
    assert bodies == [(b"bad", {"k": "v"})] * 3
    assert dead.body == b"bad"
    assert dead.message_id == "bad-1"
    assert dict(dead.headers) == {
        "k": "v",
        ERROR_HEADER: "delivery limit reached: ValueError: price is negative",
        ORIGINAL_QUEUE_HEADER: QUEUE,
    }
    await assert_nothing_left(bus)


async def test_prefetch_bounds_the_handlers_running_at_once(bus: MessageBus) -> None:
    gate = asyncio.Event()
    running = 0
    peak = 0
    done: list[bytes] = []

    async def handler(message: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await gate.wait()
        finally:
            running -= 1
        done.append(message.body)

    for i in range(8):
        await bus.publish(QUEUE, b"%d" % i)
    consumer = await bus.consume(QUEUE, handler, prefetch=3)
    await wait_for(lambda: running == 3, message="three handlers running")
    # The other five were not handed out: the consumer may not hold more than three.
    assert await bus.message_count(QUEUE) == 5
    gate.set()
    await wait_for(lambda: len(done) == 8, message="all eight handled")
    await consumer.stop(grace=5)
    assert peak == 3
    assert sorted(done) == sorted(b"%d" % i for i in range(8))


async def test_stop_waits_for_the_running_handler(bus: MessageBus) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[bytes] = []

    async def handler(message: Message) -> None:
        started.set()
        await release.wait()
        finished.append(message.body)

    consumer = await bus.consume(QUEUE, handler, prefetch=1)
    await bus.publish(QUEUE, b"first")
    await bus.publish(QUEUE, b"second")
    await asyncio.wait_for(started.wait(), 10)

    stopping = asyncio.create_task(consumer.stop(grace=10))
    done, _ = await asyncio.wait({stopping}, timeout=0.3)
    assert not done, "stop() returned while a handler was still running"
    release.set()
    await asyncio.wait_for(stopping, 10)

    assert finished == [b"first"]
    # Not handed to the stopped consumer: still waiting, as published.
    second = await bus.get(QUEUE, timeout=10)
    assert second is not None
    assert (second.body, second.redelivered, second.delivery_count) == (b"second", False, 0)
    await assert_nothing_left(bus)


async def test_a_handler_still_running_after_grace_is_cancelled_and_its_message_kept(
    bus: MessageBus,
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(message: Message) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    consumer = await bus.consume(QUEUE, handler, prefetch=1)
    await bus.publish(QUEUE, b"slow", message_id="slow-1")
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.wait_for(consumer.stop(grace=0.1), 10)

    assert cancelled.is_set()
    back = await bus.get(QUEUE, timeout=10)
    assert back is not None
    assert (back.message_id, back.redelivered, back.delivery_count) == ("slow-1", True, 1)


async def test_publish_to_an_unknown_queue_raises(bus: MessageBus) -> None:
    with pytest.raises(PublishError, match="no-such-queue"):
        await bus.publish("no-such-queue", b"{}")
    # The bus is still fine for the queues that exist.
    await bus.publish(QUEUE, b"after", message_id="after")
    after = await bus.get(QUEUE, timeout=10)
    assert after is not None
    assert after.message_id == "after"


async def test_unknown_queues_are_refused_to_consumers_and_readers(bus: MessageBus) -> None:
    async def handler(message: Message) -> None:
        raise AssertionError("never called")

    with pytest.raises(LookupError):
        await bus.consume("no-such-queue", handler, prefetch=1)
    with pytest.raises(LookupError):
        await bus.consume(DLQ, handler, prefetch=1)
    with pytest.raises(LookupError):
        await bus.get("no-such-queue", timeout=0)
    with pytest.raises(LookupError):
        await bus.message_count("no-such-queue")


async def test_get_returns_none_when_the_queue_stays_empty(bus: MessageBus) -> None:
    assert await bus.get(QUEUE, timeout=0) is None
    assert await bus.get(QUEUE, timeout=0.1) is None


async def test_concurrent_publishes_all_arrive(bus: MessageBus) -> None:
    await asyncio.gather(*(bus.publish(QUEUE, b"%d" % i) for i in range(50)))

    async def fifty() -> bool:
        return await bus.message_count(QUEUE) == 50

    await wait_for(fifty, message="fifty messages in the queue")


async def test_messages_survive_closing_the_bus(new_bus: NewBus) -> None:
    first = await new_bus()
    assert await first.is_healthy()
    await first.publish(QUEUE, b"one", message_id="m-1", headers={"k": "v"})
    await first.publish(QUEUE, b"two", message_id="m-2", correlation_id="c-2")
    await first.close()
    assert not await first.is_healthy()
    with pytest.raises(PublishError):
        await first.publish(QUEUE, b"closed")

    second = await new_bus()
    one = await second.get(QUEUE, timeout=10)
    two = await second.get(QUEUE, timeout=10)
    assert one is not None
    assert two is not None
    assert (one.body, one.message_id, dict(one.headers)) == (b"one", "m-1", {"k": "v"})
    assert (two.body, two.message_id, two.correlation_id) == (b"two", "m-2", "c-2")
    assert await second.message_count(QUEUE) == 0
