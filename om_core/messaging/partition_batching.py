"""Batches over the partitions an instance consumes, one batch per partition at a time.

:class:`om_core.messaging.batching.Batcher` serves one queue. An instance consuming several
partition queues needs the same batching across them — per-batch costs (transactions,
statements) are what batching saves, and a batcher per partition would split the load into
batches a few messages long — but one partition's messages must stay in order: a partition
holds whole symbols, and its messages are decided in the order they were published.

:class:`PartitionBatcher` queues every partition's deliveries in arrival order and forms each
batch from the partitions that have no batch running: it takes their queued messages in
order, up to ``max_batch``, and keeps the partitions busy until the batch is done. So one
partition's messages go through batches strictly one after the other, in order, while up to
``concurrency`` batches — each with messages of several partitions — run at once. As with
``Batcher``, a message that arrives alone is processed at once, and each message gets its
own outcome; under load a small batch of the few messages whose partitions are free is not
started while batches run (half a batch or more waiting): the next batch to finish makes
room for a larger one (without this, signal batches in a burst of bench/signal_to_order
averaged 7–10 messages instead of 22–25).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from om_core.messaging.base import Message
from om_core.messaging.batching import BatchFunction, run_batch

__all__ = ["PartitionBatcher"]

log = logging.getLogger(__name__)

_Entry = tuple[str, Message, "asyncio.Future[BaseException | None]"]


class PartitionBatcher:
    def __init__(
        self, process: BatchFunction, *, max_batch: int, name: str, concurrency: int = 4
    ) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError(f"max_batch and concurrency must be at least 1 ({name})")
        self._process = process
        self._max = max_batch
        self._name = name
        self._concurrency = concurrency
        self._queued: list[_Entry] = []
        #: Partitions with a batch running.
        self._busy: set[str] = set()
        self._running: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return len(self._queued)

    def handler(self, partition: str) -> Callable[[Message], Awaitable[None]]:
        """The bus handler for ``partition``'s queue."""

        async def handle(message: Message) -> None:
            outcome: asyncio.Future[BaseException | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._queued.append((partition, message, outcome))
            self._start()
            error = await outcome
            if error is not None:
                raise error

        return handle

    def _start(self) -> None:
        while self._queued and len(self._running) < self._concurrency:
            batch: list[_Entry] = []
            keys: set[str] = set()
            rest: list[_Entry] = []
            for entry in self._queued:
                partition, _, outcome = entry
                if outcome.done():
                    continue  # its handler gave up (consumer stopped): redelivered anyway
                if partition in self._busy or len(batch) >= self._max:
                    rest.append(entry)
                    continue
                batch.append(entry)
                keys.add(partition)
            if not batch:
                self._queued = rest
                return
            if self._running and len(batch) < self._max // 2 <= len(batch) + len(rest):
                # Under load (half a batch or more waiting, batches running), most of what
                # waits belongs to busy partitions: a batch of the few others now would cost a
                # transaction for a few messages. A running batch finishes first; the next
                # one takes more.
                return
            self._queued = rest
            self._busy |= keys
            task = asyncio.create_task(self._run(batch), name=f"batch-{self._name}")
            self._running.add(task)
            task.add_done_callback(functools.partial(self._finished, keys=frozenset(keys)))

    def _finished(self, task: asyncio.Task[None], *, keys: frozenset[str]) -> None:
        self._running.discard(task)
        self._busy -= keys
        self._start()

    async def _run(self, batch: list[_Entry]) -> None:
        try:
            # A batch that fails as a whole is processed again message by message.
            outcomes = await run_batch(
                self._process, [message for _, message, _ in batch], name=self._name
            )
        except asyncio.CancelledError:
            for _, _, outcome in batch:
                outcome.cancel()
            raise
        for (_, _, outcome), result in zip(batch, outcomes, strict=True):
            if not outcome.done():
                outcome.set_result(result)

    async def close(self) -> None:
        """Stop every batch (after the consumers stopped): unfinished messages are
        redelivered."""
        for _, _, outcome in self._queued:
            outcome.cancel()
        self._queued.clear()
        running = set(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
