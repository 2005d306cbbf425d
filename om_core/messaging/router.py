"""The partition router: an entry queue → its consistent-hash exchange, in order, at least once.

One router per entry queue runs in the whole deployment (a slot of
:mod:`om_core.cluster`). It consumes the entry queue, publishes each message to
``<entry>.partitions`` with the symbol as routing key (:mod:`om_core.messaging.partitions`),
and acknowledges the message once the broker confirmed every part of it.

Order: deliveries are handled in the order they arrive and their publishes are written to
the channel in that order (each publish takes the channel's FIFO lock before the next
delivery's does), so the broker enqueues one symbol's messages in their entry-queue order.
Confirms are awaited concurrently: ``prefetch`` messages may be on their way at once.

At least once: a message is acknowledged only after its publish was confirmed. A router that
dies in between leaves it unacknowledged, the broker delivers it again to the next router,
and the partition receives it twice; its consumer de-duplicates. When a publish fails (the
broker refused it, or no confirm came in time) the router closes its channel, which returns
that message and every later one together, and starts again a moment later: returning the
one message alone would put it behind later messages of its symbol. Later messages whose
publishes were confirmed already go out a second time; only when one of them is of the
refused message's symbol does that symbol's order bend — as for the outbox relay, the price
of having ``prefetch`` messages on their way — and the per-symbol locks keep it safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from om_core import metrics
from om_core.messaging.base import PublishError
from om_core.messaging.partitions import ROUTES, Routed
from om_core.messaging.rabbitmq import (
    RabbitBus,
    _ack,
    _close_quietly,
    _copy,
    _publisher_headers,
)

__all__ = ["PartitionRouter"]

log = logging.getLogger(__name__)

_CONTROL_TIMEOUT = 10.0


class _Delivery:
    """One entry-queue message on its way: ``done`` is ``None`` while its publishes await
    their confirms, then whether they all succeeded."""

    __slots__ = ("done", "incoming")

    def __init__(self, incoming: AbstractIncomingMessage) -> None:
        self.incoming = incoming
        self.done: bool | None = None


class PartitionRouter:
    def __init__(
        self,
        bus: RabbitBus,
        entry: str,
        *,
        prefetch: int,
        grace: float,
        retry_delay: float = 1.0,
    ) -> None:
        if entry not in bus.partitioned:
            raise LookupError(f"{entry!r} is not partitioned on this bus")
        self._bus = bus
        self._entry = entry
        self._route = ROUTES[entry]
        self._prefetch = prefetch
        self._grace = grace
        self._retry_delay = retry_delay
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        #: Deliveries in the order they arrived; settled from the front only.
        self._pending: deque[_Delivery] = deque()
        self._settling = asyncio.Lock()
        self._forwarding: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._recycling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping = False
        await self._open()
        log.info("routing %s to its %d partitions", self._entry, self._bus.partitions)

    async def _open(self) -> None:
        channel = await self._bus.consumer_channel()
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            self._queue = await self._bus.declare_on(channel, self._entry)
            self._channel = channel
            self._tag = await self._queue.consume(self._on_message, no_ack=False)
        except BaseException:
            await _close_quietly(channel)
            self._channel = None
            raise

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        # aio-pika runs each delivery's callback in a task of its own, in delivery order.
        if self._stopping or self._channel is None:
            # Stopping, or closing after a failure: left unsettled, the channel's closing
            # returns it to the entry queue.
            return
        delivery = _Delivery(incoming)
        self._pending.append(delivery)
        task = asyncio.current_task()
        if task is not None:
            self._forwarding.add(task)
        try:
            delivery.done = await self._forward(incoming)
        finally:
            if task is not None:
                self._forwarding.discard(task)
        await self._settle()

    async def _forward(self, incoming: AbstractIncomingMessage) -> bool:
        routed = self._route(incoming.body, incoming.message_id)
        try:
            if len(routed) == 1:
                await self._publish(incoming, routed[0])
            else:
                await asyncio.gather(*(self._publish(incoming, part) for part in routed))
        except PublishError as exc:
            log.warning(
                "cannot route message %s from %s (%s); it goes back to the queue with every "
                "message after it",
                incoming.message_id,
                self._entry,
                exc,
            )
            return False
        metrics.count_routed(self._entry, len(routed))
        return True

    async def _publish(self, incoming: AbstractIncomingMessage, part: Routed) -> None:
        properties = _copy(incoming, _publisher_headers(incoming))
        if part.message_id is not None:
            properties.message_id = part.message_id
        await self._bus.publish_to_partition(self._entry, part.routing_key, part.body, properties)

    async def _settle(self) -> None:
        """Acknowledge the confirmed deliveries at the front, all with one ``multiple`` ack
        (a frame per run instead of per message). Strictly in delivery order: a multiple ack
        covers every earlier delivery. A delivery whose publish failed stops it there."""
        async with self._settling:
            last: AbstractIncomingMessage | None = None
            while self._pending and self._pending[0].done:
                last = self._pending.popleft().incoming
            if last is not None:
                await _ack(self._entry, last, multiple=True)
            if self._pending and self._pending[0].done is False and self._recycling is None:
                self._recycling = asyncio.create_task(self._recycle(), name="router-recycle")

    async def _recycle(self) -> None:
        """A publish failed: returning that one message (a nack) would put it behind later
        ones of its symbol that did go out. Instead close the channel, which returns it and
        every message after it together, in their order, and start over after a pause."""
        try:
            await self._close(grace=self._grace)
            await asyncio.sleep(self._retry_delay)
            while not self._stopping:
                try:
                    await self._open()
                    break
                except Exception as exc:
                    log.warning("cannot resume routing %s: %r", self._entry, exc)
                    await asyncio.sleep(self._retry_delay)
        finally:
            self._recycling = None

    async def _close(self, *, grace: float) -> None:
        channel, queue, tag = self._channel, self._queue, self._tag
        self._channel = self._queue = None
        self._tag = None
        if channel is not None and queue is not None and tag is not None and not channel.is_closed:
            try:
                async with asyncio.timeout(_CONTROL_TIMEOUT):
                    await queue.cancel(tag)
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                log.warning("cannot cancel the router's consumer of %s: %r", self._entry, exc)
        current = asyncio.current_task()
        forwarding = {t for t in self._forwarding if t is not current}
        if forwarding:
            await asyncio.wait(forwarding, timeout=max(grace, 0))
        for task in forwarding:
            task.cancel()
        await asyncio.gather(*forwarding, return_exceptions=True)
        async with self._settling:
            last: AbstractIncomingMessage | None = None
            while self._pending and self._pending[0].done:
                last = self._pending.popleft().incoming
            if last is not None:
                await _ack(self._entry, last, multiple=True)
            # The rest are returned by closing the channel, in their order.
            self._pending.clear()
        if channel is not None:
            await _close_quietly(channel)

    async def stop(self) -> None:
        """Stop taking messages; let those on their way be confirmed and acknowledged within
        the grace period; the rest go back to the entry queue."""
        self._stopping = True
        recycling = self._recycling
        if recycling is not None and recycling is not asyncio.current_task():
            recycling.cancel()
            await asyncio.gather(recycling, return_exceptions=True)
        await self._close(grace=self._grace)
        log.info("stopped routing %s", self._entry)
