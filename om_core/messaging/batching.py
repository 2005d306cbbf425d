"""Group deliveries that arrive together, so their work can share one transaction.

The bus hands every message to its own handler call (see :mod:`om_core.messaging.base`).
:class:`Batcher` is such a handler: it queues the message and waits while a worker
passes everything queued so far, up to ``max_batch`` messages, to a batch function at once.
Each message still gets its own outcome, so the acknowledgement policy is unchanged: the
batch function returns, per message, ``None`` (acknowledge) or the exception its handler
would have raised (dead-letter or redeliver it).

A batch function that fails as a whole (a bug: the consumers' batch functions isolate their
messages themselves) is called again with each message alone (:func:`isolate`), so messages
that shared a batch with a poison one are still processed; a message that fails alone is
dead-lettered unless its failure is transient (:mod:`om_core.failures`).

Nothing waits to fill a batch: a message that arrives alone is processed alone, at once.
Batches grow only while the batches in progress (``concurrency`` of them) keep every worker
busy, that is, under load — the same trade a database makes with group commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from om_core.failures import dead_letter, is_transient
from om_core.messaging.base import Message

__all__ = ["BatchFunction", "Batcher", "isolate", "run_batch"]

log = logging.getLogger(__name__)

#: Takes the messages of one batch; returns one outcome per message, in the same order.
BatchFunction = Callable[[Sequence[Message]], Awaitable[Sequence[BaseException | None]]]


async def run_batch(
    process: BatchFunction, messages: Sequence[Message], *, name: str
) -> Sequence[BaseException | None]:
    """``process(messages)``; when it fails as a whole, each message alone (:func:`isolate`).

    Cancellation propagates.
    """
    try:
        outcomes = await process(messages)
        if len(outcomes) != len(messages):
            raise RuntimeError(
                f"batch function returned {len(outcomes)} outcomes for {len(messages)}"
            )
        return outcomes
    except Exception as exc:
        if len(messages) == 1:
            return [_outcome(exc, name)]
        log.exception(
            "%s batch of %d failed; processing its messages one by one", name, len(messages)
        )
        return await isolate(process, messages, name=name)


async def isolate(
    process: BatchFunction, messages: Sequence[Message], *, name: str
) -> list[BaseException | None]:
    """Each of ``messages`` processed alone: one outcome each, whatever the others do."""
    outcomes: list[BaseException | None] = []
    for message in messages:
        try:
            (outcome,) = await process([message])
        except Exception as exc:
            outcome = _outcome(exc, name)
        outcomes.append(outcome)
    return outcomes


def _outcome(exc: Exception, name: str) -> BaseException:
    """A transient failure returns the message to its queue; any other dead-letters it."""
    return exc if is_transient(exc) else dead_letter(exc, f"{name}: processing the message")


class Batcher:
    def __init__(
        self, process: BatchFunction, *, max_batch: int, name: str, concurrency: int = 4
    ) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError(f"max_batch and concurrency must be at least 1 ({name})")
        self._process = process
        self._max = max_batch
        self._name = name
        #: Batches in progress at once: one slow batch (an exchange that takes its time to
        #: answer) must not hold up every message behind it.
        self._concurrency = concurrency
        self._queued: list[tuple[Message, asyncio.Future[BaseException | None]]] = []
        self._running: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Messages queued for the next batch."""
        return len(self._queued)

    async def __call__(self, message: Message) -> None:
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._queued.append((message, outcome))
        self._start()
        error = await outcome
        if error is not None:
            raise error

    def _start(self) -> None:
        while self._queued and len(self._running) < self._concurrency:
            batch = [(m, f) for m, f in self._queued[: self._max] if not f.done()]
            del self._queued[: self._max]
            if not batch:
                continue  # their handlers gave up (consumer stopped): redelivered anyway
            task = asyncio.create_task(self._run(batch), name=f"batch-{self._name}")
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _run(self, batch: list[tuple[Message, asyncio.Future[BaseException | None]]]) -> None:
        try:
            outcomes = await run_batch(
                self._process, [message for message, _ in batch], name=self._name
            )
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Stop every batch (after the consumers stopped): unfinished messages are
        redelivered."""
        for _, future in self._queued:
            future.cancel()
        self._queued.clear()
        running = set(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
