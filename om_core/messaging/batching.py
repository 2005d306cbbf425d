"""Group deliveries that arrive together, so their work can share one transaction.

The bus hands every message to its own handler call (see :mod:`om_core.messaging.base`).
:class:`Batcher` is such a handler: it queues the message and waits while a single worker
passes everything queued so far, up to ``max_batch`` messages, to a batch function at once.
Each message still gets its own outcome, so the acknowledgement policy is unchanged: the
batch function returns, per message, ``None`` (acknowledge) or the exception its handler
would have raised (dead-letter or redeliver it).

Nothing waits to fill a batch: a message that arrives alone is processed alone, at once.
Batches grow only while the worker is busy, that is, under load — the same trade a database
makes with group commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from om_core.messaging.base import Message

__all__ = ["BatchFunction", "Batcher"]

log = logging.getLogger(__name__)

#: Takes the messages of one batch; returns one outcome per message, in the same order.
BatchFunction = Callable[[Sequence[Message]], Awaitable[Sequence[BaseException | None]]]


class Batcher:
    def __init__(self, process: BatchFunction, *, max_batch: int, name: str) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (got {max_batch})")
        self._process = process
        self._max = max_batch
        self._name = name
        self._queued: list[tuple[Message, asyncio.Future[BaseException | None]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def __call__(self, message: Message) -> None:
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._queued.append((message, outcome))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name=f"batch-{self._name}")
        error = await outcome
        if error is not None:
            raise error

    async def _drain(self) -> None:
        while self._queued:
            batch = [(m, f) for m, f in self._queued[: self._max] if not f.done()]
            del self._queued[: self._max]
            if not batch:
                continue  # their handlers gave up (consumer stopped): redelivered anyway
            try:
                outcomes = await self._process([message for message, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(
                        f"batch function returned {len(outcomes)} outcomes for {len(batch)}"
                    )
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                # A bug in the batch function: every message of the batch is redelivered.
                log.exception("%s batch of %d failed", self._name, len(batch))
                outcomes = [exc] * len(batch)
            for (_, future), result in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        """Stop the worker (after the consumers stopped): unfinished messages are redelivered."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        for _, future in self._queued:
            future.cancel()
        self._queued.clear()
