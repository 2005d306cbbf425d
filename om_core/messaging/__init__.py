"""Messaging: the bus interface, its RabbitMQ and in-process implementations."""

from __future__ import annotations

from om_core.messaging.base import (
    Consumer,
    DeadLetter,
    Handler,
    Message,
    MessageBus,
    PublishError,
    TopologyError,
    dlq_name,
)

__all__ = [
    "Consumer",
    "DeadLetter",
    "Handler",
    "Message",
    "MessageBus",
    "PublishError",
    "TopologyError",
    "create_bus",
    "dlq_name",
]


def create_bus(
    url: str,
    *,
    queue_type: str = "quorum",
    delivery_limit: int = 10,
    publish_timeout: float = 10.0,
    partitions: int = 0,
) -> MessageBus:
    """Build the bus for ``url``: ``memory://`` or ``amqp://``.

    ``partitions`` applies to RabbitMQ only: the in-process bus lives in one process, which
    consumes everything anyway.
    """
    if url.startswith("memory://"):
        from om_core.messaging.memory import MemoryBus

        return MemoryBus(delivery_limit=delivery_limit)
    from om_core.messaging.rabbitmq import RabbitBus

    return RabbitBus(
        url,
        queue_type=queue_type,
        delivery_limit=delivery_limit,
        publish_timeout=publish_timeout,
        partitions=partitions,
    )
