"""The exclusive work a service instance can be given: a partition queue to consume."""

from __future__ import annotations

from om_core.messaging.base import Consumer, Handler, MessageBus

__all__ = ["PartitionConsumer"]


class PartitionConsumer:
    """Consume one partition queue with ``handler`` (a
    :class:`om_core.messaging.partition_batching.PartitionBatcher`'s, which keeps the
    partition's messages in order) while this instance holds the partition."""

    def __init__(
        self, bus: MessageBus, queue: str, handler: Handler, *, prefetch: int, grace: float
    ) -> None:
        self.queue = queue
        self._bus = bus
        self._handler = handler
        self._prefetch = prefetch
        self._grace = grace
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        self._consumer = await self._bus.consume(self.queue, self._handler, prefetch=self._prefetch)

    async def stop(self) -> None:
        """Messages still in progress after the grace period go back to the queue, first in
        line for the next holder."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop(self._grace)
