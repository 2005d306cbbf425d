"""One message-bus interface, two implementations (RabbitMQ and in-process).

The acknowledgement policy lives here, in one place, and both implementations honour it:

* the handler returns normally → the message is acknowledged;
* the handler raises :class:`DeadLetter` → the message is republished, unchanged, to the
  queue's dead-letter queue (``<queue>.dlq``) with the reason in the ``x-om-error`` header,
  *then* acknowledged, so it is never lost;
* the handler raises anything else → the message is returned to its queue for redelivery;
  after ``delivery_limit`` deliveries it is dead-lettered instead (never requeued forever).

Transient failures that should not burn deliveries (database down, exchange unavailable) are
the handler's to retry while it holds the message, for a bounded time; every other failure of
one message is the handler's to turn into :class:`DeadLetter` at once (the classification
is :mod:`om_core.failures`).

Delivery is at-least-once: a message can reach a handler again after its handler finished
(the acknowledgement was lost with the connection, or a consumer stopped past its grace), so
handlers must be idempotent, keyed on ``message_id``.

What a handler sees:

* ``delivery_count`` counts earlier deliveries of this message, whatever ended them (handler
  error, consumer stopped, connection lost); ``redelivered`` is true when it is above zero.
  (On RabbitMQ classic queues the broker does not count: deliveries that ended without a
  handler error are counted once at most, see :mod:`om_core.messaging.rabbitmq`.)
  The headers the bus uses to count (``x-delivery-count``, ``x-om-delivery-count``) are taken
  out of ``headers``, which hold exactly what the publisher sent.
* A message returned for redelivery goes back to the *front* of its queue (RabbitMQ quorum
  queues and the in-process bus); on RabbitMQ classic queues it is republished to the back.
* Every published message has a ``message_id``: one is generated when the publisher gave none.

Dead-lettered messages keep body and properties; their headers are the publisher's plus
``x-om-error`` (the reason) and ``x-om-original-queue``. A bus given a
:attr:`MessageBus.dead_letter_sink` also hands every message it dead-letters to it (the service
keeps them in its ``dead_letters`` table, where the console lists, re-drives and discards them),
once the copy is in ``<queue>.dlq`` and before the original is acknowledged.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DLQ_SUFFIX",
    "ERROR_HEADER",
    "ORIGINAL_QUEUE_HEADER",
    "Consumer",
    "ConsumerActivity",
    "DeadLetter",
    "DeadLetterSink",
    "DeadLettered",
    "Handler",
    "Message",
    "MessageBus",
    "PublishError",
    "Settlement",
    "TopologyError",
    "Verdict",
    "dlq_name",
    "judge",
]

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"
ERROR_HEADER = "x-om-error"
ORIGINAL_QUEUE_HEADER = "x-om-original-queue"


def dlq_name(queue: str) -> str:
    return queue + DLQ_SUFFIX


@dataclass(frozen=True, slots=True)
class Message:
    body: bytes
    message_id: str | None = None
    type: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    #: True when the broker delivered this message before (to us or another consumer).
    redelivered: bool = False
    #: How many times it was delivered before this delivery (0 on the first).
    delivery_count: int = 0
    #: The AMQP ``timestamp`` property the publisher set (UTC), if any.
    timestamp: datetime | None = None


Handler = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message the bus just dead-lettered: where it came from, why, and when."""

    queue: str
    message: Message
    reason: str
    at: datetime


#: Receives every message a bus dead-letters (see :attr:`MessageBus.dead_letter_sink`).
DeadLetterSink = Callable[[DeadLettered], Awaitable[None]]
#: How long a sink may take before the bus gives up on it and settles the message anyway.
SINK_TIMEOUT = 10.0


class DeadLetter(Exception):
    """Raise from a handler: this message can never be processed; keep it with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PublishError(Exception):
    """The broker did not confirm the message (nack, unroutable, or connection lost).

    Not proof that the message is absent: when the confirm was lost or late it may be queued,
    so a retry can duplicate it (consumers de-duplicate by ``message_id``).
    """


class Settlement(enum.Enum):
    ACK = "ack"
    DEAD_LETTER = "dead-letter"
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True)
class Verdict:
    settlement: Settlement
    #: Why the message is dead-lettered or requeued; empty on ack.
    reason: str = ""


#: A reason travels in a header; a handler's error message can be long.
_MAX_REASON = 1000


class ConsumerActivity:
    """What this process's consumers hold, per queue: deliveries in progress (delivered, not
    yet settled) and messages waiting to retry a transient failure, each since when.

    In-process only: the broker's own count of unacknowledged messages needs its management
    API, and ``message_count`` (``om_consumer_lag_messages``) counts only messages *ready* for
    delivery. This is the unacknowledged view (``om_consumer_unacked_messages``,
    ``om_consumer_oldest_unacked_age_seconds``, ``om_consumer_messages_in_retry``; ``/ready``).
    """

    def __init__(self) -> None:
        self._deliveries: dict[str, dict[int, float]] = {}
        self._retries: dict[str, dict[int, tuple[float, int]]] = {}
        self._next = 0

    @contextmanager
    def delivery(self, queue: str) -> Iterator[None]:
        """One message of ``queue`` is delivered and unsettled while the block runs."""
        self._next += 1
        key, entries = self._next, self._deliveries.setdefault(queue, {})
        entries[key] = time.monotonic()
        try:
            yield
        finally:
            entries.pop(key, None)

    @contextmanager
    def retrying(self, queue: str, count: int = 1) -> Iterator[None]:
        """``count`` messages of ``queue`` wait to retry while the block runs."""
        self._next += 1
        key, entries = self._next, self._retries.setdefault(queue, {})
        entries[key] = (time.monotonic(), count)
        try:
            yield
        finally:
            entries.pop(key, None)

    def queues(self) -> list[str]:
        """Every queue seen so far (its series stay, at 0 when idle)."""
        return sorted(set(self._deliveries) | set(self._retries))

    def unacked(self, queue: str) -> int:
        return len(self._deliveries.get(queue, {}))

    def oldest_unacked_age(self, queue: str) -> float:
        """Seconds since the oldest unsettled delivery of ``queue`` arrived; 0 when none."""
        return _age(self._deliveries.get(queue, {}).values())

    def in_retry(self, queue: str) -> int:
        return sum(n for _, n in self._retries.get(queue, {}).values())

    def oldest_retry_age(self, queue: str) -> float:
        """Seconds the longest retry in progress on ``queue`` has lasted; 0 when none."""
        return _age(start for start, _ in self._retries.get(queue, {}).values())


def _age(starts: Iterable[float]) -> float:
    first = min(starts, default=None)
    return 0.0 if first is None else max(time.monotonic() - first, 0.0)


async def judge(
    handler: Handler,
    message: Message,
    *,
    queue: str,
    delivery_limit: int,
    activity: ConsumerActivity | None = None,
) -> Verdict:
    """Run ``handler`` on ``message`` and decide its fate by the policy above.

    Both buses call this and only carry the verdict out. Cancelling the task running it
    propagates: a handler that did not finish leaves its message unsettled, so the broker
    delivers it again. A ``CancelledError`` the handler raises on its own is a failure.
    While the handler runs, the delivery counts in ``activity``.
    """
    if activity is None:
        return await _judge(handler, message, queue=queue, delivery_limit=delivery_limit)
    with activity.delivery(queue):
        return await _judge(handler, message, queue=queue, delivery_limit=delivery_limit)


async def _judge(handler: Handler, message: Message, *, queue: str, delivery_limit: int) -> Verdict:
    try:
        await handler(message)
    except DeadLetter as exc:
        log.warning("dead-lettering message %s from %s: %s", message.message_id, queue, exc.reason)
        return Verdict(Settlement.DEAD_LETTER, exc.reason[:_MAX_REASON])
    except (Exception, asyncio.CancelledError) as exc:
        current = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and (current is None or current.cancelling()):
            raise
        error = f"{type(exc).__name__}: {exc}"[:_MAX_REASON]
        delivery = message.delivery_count + 1
        if delivery >= delivery_limit:
            log.error(
                "handler failed on message %s from %s at delivery %d of %d; dead-lettering it",
                message.message_id,
                queue,
                delivery,
                delivery_limit,
                exc_info=exc,
            )
            return Verdict(Settlement.DEAD_LETTER, f"delivery limit reached: {error}")
        log.warning(
            "handler failed on message %s from %s at delivery %d of %d; requeueing it",
            message.message_id,
            queue,
            delivery,
            delivery_limit,
            exc_info=exc,
        )
        return Verdict(Settlement.REQUEUE, error)
    return Verdict(Settlement.ACK)


class TopologyError(Exception):
    """A queue exists on the broker with other arguments than this service declares."""


class Consumer(abc.ABC):
    @abc.abstractmethod
    async def stop(self, grace: float) -> None:
        """Stop taking new messages, wait up to ``grace`` seconds for in-flight handlers.

        Handlers still running after ``grace`` are cancelled. Messages delivered but not
        settled (never handed to a handler, or whose handler was cancelled) go back to the
        queue and count one more delivery.
        """


class MessageBus(abc.ABC):
    """A connection to a broker that knows this service's queues."""

    #: Called with each message this bus dead-letters, after its copy is in ``<queue>.dlq``
    #: and before the original is acknowledged. A sink that fails or takes longer than
    #: :data:`SINK_TIMEOUT` is logged and changes nothing: the copy in ``<queue>.dlq`` stays.
    dead_letter_sink: DeadLetterSink | None = None
    _activity: ConsumerActivity | None = None

    @property
    def activity(self) -> ConsumerActivity:
        """Deliveries and retries in progress on this bus's consumers (see
        :class:`ConsumerActivity`)."""
        if self._activity is None:
            self._activity = ConsumerActivity()
        return self._activity

    async def _sink_dead_letter(self, queue: str, message: Message, reason: str) -> None:
        sink = self.dead_letter_sink
        if sink is None:
            return
        record = DeadLettered(queue, message, reason, datetime.now(UTC))
        try:
            await asyncio.wait_for(sink(record), SINK_TIMEOUT)
        except Exception:
            log.exception(
                "could not record dead-lettered message %s from %s; it is kept in %s",
                message.message_id,
                queue,
                dlq_name(queue),
            )

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and declare every queue in ``queues`` with its dead-letter queue."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
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
        """Publish a persistent message to ``queue``; returns once the broker confirmed it.

        Raises :class:`PublishError` when it did not.
        """

    @abc.abstractmethod
    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Consumer:
        """Deliver messages of ``queue`` to ``handler``, at most ``prefetch`` at once.

        ``queue`` is one of the bus's queues; any other name, a dead-letter queue included,
        raises :class:`LookupError` (read those with :meth:`get`).
        """

    @abc.abstractmethod
    async def get(self, queue: str, *, timeout: float) -> Message | None:  # noqa: ASYNC109
        """Take the next message of ``queue`` outside any consumer, waiting up to ``timeout``.

        The message is acknowledged (removed from the queue) before it is returned; ``None``
        when none arrived in time. For tests, diagnostics and dead-letter tooling, not for
        the service's own processing, which goes through :meth:`consume` and its ack policy.
        An unknown queue raises :class:`LookupError`.
        """

    @abc.abstractmethod
    async def message_count(self, queue: str) -> int:
        """How many messages of ``queue`` wait for delivery (in-flight ones not counted).

        An unknown queue raises :class:`LookupError`.
        """

    @abc.abstractmethod
    async def is_healthy(self) -> bool:
        """True when the broker is reachable right now."""
