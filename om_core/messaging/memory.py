"""The in-process bus: RabbitMQ's delivery semantics without a broker, for tests and demos.

Queues live in a :class:`MemoryBroker`, which outlives the buses connected to it the way a
RabbitMQ server outlives connections: close a bus, start another on the same broker, and the
messages are still there. Like a quorum queue, a message returned for redelivery (handler
error, or a consumer stopped before its handler finished) goes back to the front of its queue
with ``redelivered=True`` and ``delivery_count`` one higher.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from om_core.messaging.base import (
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    Consumer,
    Handler,
    Message,
    MessageBus,
    PublishError,
    Settlement,
    dlq_name,
    judge,
)
from om_core.messaging.topology import ALL_QUEUES

__all__ = ["MemoryBroker", "MemoryBus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Envelope:
    """A message as the queue holds it, with its delivery history."""

    body: bytes
    message_id: str
    type: str | None
    correlation_id: str | None
    content_type: str | None
    headers: Mapping[str, Any] = field(default_factory=dict)
    delivery_count: int = 0

    def deliver(self) -> Message:
        return Message(
            body=self.body,
            message_id=self.message_id,
            type=self.type,
            correlation_id=self.correlation_id,
            content_type=self.content_type,
            # A copy per delivery: a handler mutating it must not change what is redelivered.
            headers=dict(self.headers),
            redelivered=self.delivery_count > 0,
            delivery_count=self.delivery_count,
        )

    def returned(self) -> _Envelope:
        return replace(self, delivery_count=self.delivery_count + 1)


class _Queue:
    def __init__(self, name: str) -> None:
        self.name = name
        self._items: deque[_Envelope] = deque()
        self._not_empty = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, envelope: _Envelope, *, front: bool = False) -> None:
        if front:
            self._items.appendleft(envelope)
        else:
            self._items.append(envelope)
        self._not_empty.set()

    def take_nowait(self) -> _Envelope | None:
        return self._items.popleft() if self._items else None

    async def take(self) -> _Envelope:
        # The message is popped only after the wait, so cancelling a taker never loses one.
        while not self._items:
            self._not_empty.clear()
            await self._not_empty.wait()
        return self._items.popleft()


class MemoryBroker:
    """The queues several :class:`MemoryBus` instances can share."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}

    def declare(self, name: str) -> None:
        self._queues.setdefault(name, _Queue(name))

    def queue(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise LookupError(f"no queue {name!r}") from None

    def has(self, name: str) -> bool:
        return name in self._queues


class MemoryBus(MessageBus):
    def __init__(
        self,
        *,
        delivery_limit: int = 10,
        queues: Iterable[str] = ALL_QUEUES,
        broker: MemoryBroker | None = None,
    ) -> None:
        if delivery_limit < 1:
            raise ValueError(f"delivery_limit must be at least 1 (got {delivery_limit})")
        self.delivery_limit = delivery_limit
        self.queues = tuple(queues)
        self.broker = broker if broker is not None else MemoryBroker()
        self._consumers: set[_MemoryConsumer] = set()
        self._open = False

    async def start(self) -> None:
        for queue in self.queues:
            self.broker.declare(dlq_name(queue))
            self.broker.declare(queue)
        self._open = True

    async def close(self) -> None:
        """Stop the consumers still running, without grace; their messages are returned."""
        self._open = False
        for consumer in list(self._consumers):
            await consumer.stop(grace=0)

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        type: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self._put(
            queue,
            _Envelope(
                body=bytes(body),
                message_id=message_id or uuid.uuid4().hex,
                type=type,
                correlation_id=correlation_id,
                content_type=content_type,
                headers=dict(headers or {}),
            ),
        )

    def _put(self, queue: str, envelope: _Envelope) -> None:
        if not self._open:
            raise PublishError(f"cannot publish to {queue!r}: the bus is not started")
        if not self.broker.has(queue):
            # What RabbitMQ answers to a mandatory publish nobody can route.
            raise PublishError(f"no queue {queue!r}: message returned unroutable")
        self.broker.queue(queue).put(envelope)

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Consumer:
        if not self._open:
            raise RuntimeError("the bus is not started")
        if queue not in self.queues:
            raise LookupError(f"{queue!r} is not one of this bus's queues")
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1 (got {prefetch})")
        consumer = _MemoryConsumer(self, self.broker.queue(queue), handler, prefetch)
        self._consumers.add(consumer)
        return consumer

    async def get(self, queue: str, *, timeout: float) -> Message | None:  # noqa: ASYNC109
        source = self.broker.queue(queue)
        envelope = source.take_nowait()
        if envelope is None and timeout > 0:
            try:
                envelope = await asyncio.wait_for(source.take(), timeout)
            except TimeoutError:
                return None
        return envelope.deliver() if envelope is not None else None

    async def message_count(self, queue: str) -> int:
        return len(self.broker.queue(queue))

    async def is_healthy(self) -> bool:
        return self._open

    def _dead_letter(self, queue: str, envelope: _Envelope, reason: str) -> bool:
        """Put a copy on the dead-letter queue; False when there is none to take it."""
        headers = {**envelope.headers, ERROR_HEADER: reason, ORIGINAL_QUEUE_HEADER: queue}
        try:
            self._put(dlq_name(queue), replace(envelope, headers=headers, delivery_count=0))
        except PublishError:
            log.exception("cannot dead-letter message %s from %s", envelope.message_id, queue)
            return False
        return True


class _MemoryConsumer(Consumer):
    def __init__(self, bus: MemoryBus, queue: _Queue, handler: Handler, prefetch: int) -> None:
        self._bus = bus
        self._queue = queue
        self._handler = handler
        self._slots = asyncio.Semaphore(prefetch)
        # One task per message, and inside it the handler's own task: stop() cancels only
        # handlers, never a settlement half done.
        self._deliveries: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"consume:{queue.name}")
        self._stopped = False

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                envelope = await self._queue.take()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._deliver(envelope))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, envelope: _Envelope) -> None:
        queue = self._queue.name
        verdict_task = asyncio.create_task(
            judge(
                self._handler,
                envelope.deliver(),
                queue=queue,
                delivery_limit=self._bus.delivery_limit,
                activity=self._bus.activity,
            )
        )
        self._handlers.add(verdict_task)
        try:
            verdict = await verdict_task
        except asyncio.CancelledError:
            # Unfinished: back to the queue, as RabbitMQ does when the channel closes.
            self._queue.put(envelope.returned(), front=True)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return
        finally:
            self._handlers.discard(verdict_task)
            self._slots.release()
        if verdict.settlement is Settlement.DEAD_LETTER:
            if self._bus._dead_letter(queue, envelope, verdict.reason):
                await self._bus._sink_dead_letter(queue, envelope.deliver(), verdict.reason)
            else:
                self._queue.put(envelope.returned(), front=True)
        elif verdict.settlement is Settlement.REQUEUE:
            self._queue.put(envelope.returned(), front=True)

    async def stop(self, grace: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._dispatcher.cancel()
        await asyncio.gather(self._dispatcher, return_exceptions=True)
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=max(grace, 0))
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        self._bus._consumers.discard(self)
