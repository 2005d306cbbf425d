"""What only RabbitMQ has: declared queues and arguments, the broker's own limit, persistence,
and a connection that drops."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest

from om_core.messaging import DeadLetter, Message, PublishError, TopologyError, dlq_name
from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.topology import ALL_QUEUES, SIGNALS_QUEUE
from tests.conftest import wait_for

pytestmark = pytest.mark.rabbitmq

#: The names are a contract with the other services: spelled out, not imported.
PRODUCTION_QUEUES = {
    "model-service.trading_signals",
    "ws-gateway.order",
    "order-manager.order_events",
}


def rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    assert exe is not None
    return subprocess.run(
        [exe, "-q", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path.removeprefix("/"))


def list_queues(amqp_url: str) -> dict[str, dict[str, Any]]:
    """``rabbitmqctl list_queues`` for the URL's virtual host, arguments as a dict."""
    columns = ("name", "type", "durable", "arguments")
    out = rabbitmqctl("list_queues", "-p", vhost_of(amqp_url), *columns, "--formatter", "json")
    return {
        row["name"]: {
            "type": row["type"],
            "durable": row["durable"],
            "arguments": {name: value for name, _kind, value in row["arguments"]},
        }
        for row in json.loads(out)
    }


async def test_declares_the_production_queues_as_durable_quorum_queues(amqp_url: str) -> None:
    assert set(ALL_QUEUES) == PRODUCTION_QUEUES
    bus = RabbitBus(amqp_url, delivery_limit=7)
    await bus.start()
    try:
        # Declaring again over the same queues is not a mismatch.
        again = RabbitBus(amqp_url, delivery_limit=7)
        await again.start()
        await again.close()
    finally:
        await bus.close()

    queues = await asyncio.to_thread(list_queues, amqp_url)
    assert set(queues) == PRODUCTION_QUEUES | {dlq_name(q) for q in PRODUCTION_QUEUES}
    for queue in PRODUCTION_QUEUES:
        assert queues[queue] == {
            "type": "quorum",
            "durable": True,
            "arguments": {
                "x-queue-type": "quorum",
                "x-delivery-limit": 7,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue + ".dlq",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        }
        assert queues[queue + ".dlq"] == {
            "type": "quorum",
            "durable": True,
            "arguments": {"x-queue-type": "quorum"},
        }


async def test_classic_queues_get_a_dead_letter_queue_but_no_broker_limit(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, queue_type="classic", queues=(SIGNALS_QUEUE,))
    await bus.start()
    await bus.close()

    queues = await asyncio.to_thread(list_queues, amqp_url)
    assert queues == {
        SIGNALS_QUEUE: {
            "type": "classic",
            "durable": True,
            "arguments": {
                "x-queue-type": "classic",
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": SIGNALS_QUEUE + ".dlq",
            },
        },
        SIGNALS_QUEUE + ".dlq": {
            "type": "classic",
            "durable": True,
            "arguments": {"x-queue-type": "classic"},
        },
    }


async def test_a_queue_declared_with_other_arguments_stops_start(amqp_url: str) -> None:
    classic = RabbitBus(amqp_url, queue_type="classic", queues=(SIGNALS_QUEUE,))
    await classic.start()
    await classic.close()

    quorum = RabbitBus(amqp_url, queues=(SIGNALS_QUEUE,))
    with pytest.raises(TopologyError) as raised:
        await quorum.start()
    problem = str(raised.value)
    # Both the queue and its dead-letter queue differ; each is named with the difference.
    assert f"queue '{SIGNALS_QUEUE}' exists" in problem
    assert f"queue '{SIGNALS_QUEUE}.dlq' exists" in problem
    assert "inequivalent arg 'x-queue-type'" in problem
    assert not await quorum.is_healthy()


async def test_a_different_delivery_limit_is_a_mismatch(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, delivery_limit=5, queues=(SIGNALS_QUEUE,))
    await bus.start()
    await bus.close()

    with pytest.raises(TopologyError, match=r"inequivalent arg 'x-delivery-limit'.*'3'.*'5'"):
        await RabbitBus(amqp_url, delivery_limit=3, queues=(SIGNALS_QUEUE,)).start()


async def test_broker_dead_letters_a_message_whose_consumers_never_finish(amqp_url: str) -> None:
    """The backstop: deliveries that end without a verdict still count on a quorum queue."""
    bus = RabbitBus(amqp_url, delivery_limit=1, queues=(SIGNALS_QUEUE,))
    await bus.start()
    try:
        await bus.publish(SIGNALS_QUEUE, b"hangs", message_id="hangs-1")
        for _ in range(2):  # delivery 1 and 2; the broker allows one return (count 1 <= 1)
            started = asyncio.Event()

            async def handler(message: Message, started: asyncio.Event = started) -> None:
                started.set()
                await asyncio.Event().wait()

            consumer = await bus.consume(SIGNALS_QUEUE, handler, prefetch=1)
            await asyncio.wait_for(started.wait(), 10)
            await consumer.stop(grace=0)

        dead = await bus.get(dlq_name(SIGNALS_QUEUE), timeout=10)
        assert dead is not None
        assert (dead.body, dead.message_id) == (b"hangs", "hangs-1")
        assert dead.headers["x-first-death-reason"] == "delivery_limit"
        assert await bus.message_count(SIGNALS_QUEUE) == 0
    finally:
        await bus.close()


async def test_published_and_dead_lettered_messages_are_persistent(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, queues=(SIGNALS_QUEUE,))
    await bus.start()
    try:

        async def handler(message: Message) -> None:
            if message.body == b"poison":
                raise DeadLetter("unreadable")

        consumer = await bus.consume(SIGNALS_QUEUE, handler, prefetch=1)
        await bus.publish(SIGNALS_QUEUE, b"poison")

        async def dead_lettered() -> bool:
            return await bus.message_count(dlq_name(SIGNALS_QUEUE)) == 1

        await wait_for(dead_lettered, message="the dead-lettered copy")
        await consumer.stop(grace=5)
        await bus.publish(SIGNALS_QUEUE, b"kept")
    finally:
        await bus.close()

    # Read back with a bare client: the bus's Message does not expose the delivery mode.
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for queue in (SIGNALS_QUEUE, dlq_name(SIGNALS_QUEUE)):
            raw = await (await channel.get_queue(queue)).get(no_ack=True)
            assert raw.delivery_mode == aio_pika.DeliveryMode.PERSISTENT, queue
    finally:
        await connection.close()


async def test_consuming_and_publishing_resume_after_the_connection_drops(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url + "?reconnect_interval=0.2", queues=(SIGNALS_QUEUE,))
    await bus.start()
    try:
        received: list[bytes] = []

        async def handler(message: Message) -> None:
            received.append(message.body)

        consumer = await bus.consume(SIGNALS_QUEUE, handler, prefetch=1)
        await bus.publish(SIGNALS_QUEUE, b"before")
        await wait_for(lambda: received == [b"before"], message="the first delivery")

        await asyncio.to_thread(
            rabbitmqctl, "close_all_connections", "-p", vhost_of(amqp_url), "test"
        )

        async def published_after_reconnect() -> bool:
            try:
                await bus.publish(SIGNALS_QUEUE, b"after")
            except PublishError:
                return False  # still reconnecting: the bus says so instead of hanging
            return True

        await wait_for(published_after_reconnect, timeout=15, message="a publish to succeed")
        await wait_for(lambda: b"after" in received, timeout=15, message="the restored consumer")
        assert await bus.is_healthy()
        await consumer.stop(grace=5)
        assert received == [b"before", b"after"]
    finally:
        await bus.close()
