"""The exclusive work a service instance can be given: a partition queue to consume."""

from __future__ import annotations

from om_core.messaging.base import Consumer, MessageBus
from om_core.messaging.batching import Batcher, BatchFunction

__all__ = ["PartitionConsumer"]


class PartitionConsumer:
    """Consume one partition queue, one batch at a time.

    A partition holds whole symbols, and its batches run strictly one after the other, so
    each symbol's messages are decided in the order they were published. Parallelism comes
    from the several partitions an instance consumes.
    """

    def __init__(
        self,
        bus: MessageBus,
        queue: str,
        process: BatchFunction,
        *,
        max_batch: int,
        prefetch: int,
        grace: float,
    ) -> None:
        self.queue = queue
        self._bus = bus
        self._process = process
        self._max_batch = max_batch
        self._prefetch = prefetch
        self._grace = grace
        self._consumer: Consumer | None = None
        self._batcher: Batcher | None = None

    async def start(self) -> None:
        self._batcher = Batcher(
            self._process, max_batch=self._max_batch, name=self.queue, concurrency=1
        )
        self._consumer = await self._bus.consume(self.queue, self._batcher, prefetch=self._prefetch)

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop(self._grace)
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.close()
