"""The RabbitMQ bus, on aio-pika's robust connection.

Topology. Every queue is durable, of type ``quorum`` (the default) or ``classic``, and has a
dead-letter queue ``<queue>.dlq`` of the same type; the dead-letter queue is declared first
so that it exists before anything can be dead-lettered into it. A queue that already exists
with other arguments stops :meth:`RabbitBus.start` with a :class:`TopologyError` naming it.

Counting deliveries, so no message is requeued forever:

* quorum queues count for us: every return (nack with requeue, consumer channel closed,
  connection lost) raises the ``x-delivery-count`` header. ``x-delivery-limit`` is set
  explicitly (RabbitMQ 3.10 has no default), and the queue dead-letters at-least-once
  (``x-dead-letter-strategy``, which needs ``x-overflow: reject-publish``) into its
  ``.dlq``. That broker-side limit is only a backstop: the bus dead-letters the message
  itself, with a reason, at the last allowed delivery, one before the broker would.
* classic queues do not count. A failed message is requeued by republishing a copy (with
  confirm) carrying ``x-om-delivery-count`` one higher, then acknowledging the original; the
  copy goes to the back of the queue. A delivery that ended without a handler error (crash,
  connection lost, consumer stopped) shows only as the broker's ``redelivered`` flag, which
  adds one: a message that kills its consumer every time is not bounded on classic queues.

Settlement follows :func:`om_core.messaging.base.judge`. A dead-lettered copy is published to
``<queue>.dlq`` with confirm *before* the original is acknowledged; when that publish fails the
original is returned to its queue instead, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    DeliveryMode,
    ExchangeType,
)
from aio_pika.exceptions import (
    CONNECTION_EXCEPTIONS,
    AMQPError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
)
from aio_pika.exceptions import PublishError as ReturnedError
from pamqp.commands import Basic

from om_core import faults
from om_core.config import mask_url
from om_core.messaging.base import (
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    Consumer,
    Handler,
    Message,
    MessageBus,
    PublishError,
    Settlement,
    TopologyError,
    Verdict,
    dlq_name,
    judge,
)
from om_core.messaging.partitions import (
    PARTITIONED_QUEUES,
    exchange_name,
    partition_queue,
    partition_queues,
)
from om_core.messaging.topology import ALL_QUEUES

__all__ = ["QUEUE_TYPES", "RabbitBus", "queue_arguments"]

log = logging.getLogger(__name__)

QUEUE_TYPES = ("quorum", "classic")
#: Set by quorum queues on redelivery.
BROKER_COUNT_HEADER = "x-delivery-count"
#: Set by this bus when it requeues on a classic queue.
OWN_COUNT_HEADER = "x-om-delivery-count"
_COUNT_HEADERS = (BROKER_COUNT_HEADER, OWN_COUNT_HEADER)
#: Bounds a broker call that cannot make progress while the connection is being restored.
_CONTROL_TIMEOUT = 10.0
_PERSISTENT = int(DeliveryMode.PERSISTENT)


def queue_arguments(
    queue: str,
    *,
    queue_type: str,
    delivery_limit: int,
    dead_letter_to: str | None = None,
    single_active_consumer: bool = False,
) -> dict[str, Any]:
    """The arguments ``queue`` is declared with (``<queue>.dlq`` gets just its type).

    A partition queue dead-letters into its entry queue's ``.dlq`` (``dead_letter_to``) and
    has a single active consumer.
    """
    arguments: dict[str, Any] = {
        "x-queue-type": queue_type,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_to or dlq_name(queue),
    }
    if single_active_consumer:
        arguments["x-single-active-consumer"] = True
    if queue_type == "quorum":
        arguments |= {
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return arguments


class RabbitBus(MessageBus):
    def __init__(
        self,
        url: str,
        *,
        queue_type: str = "quorum",
        delivery_limit: int = 10,
        queues: Iterable[str] = ALL_QUEUES,
        publish_timeout: float = 10.0,
        partitions: int = 0,
    ) -> None:
        """``partitions`` ≥ 1 adds, for each of :data:`PARTITIONED_QUEUES` among ``queues``,
        the consistent-hash exchange and that many partition queues
        (:mod:`om_core.messaging.partitions`)."""
        if queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue_type must be one of {QUEUE_TYPES} (got {queue_type!r})")
        if delivery_limit < 1:
            raise ValueError(f"delivery_limit must be at least 1 (got {delivery_limit})")
        if partitions < 0:
            raise ValueError(f"partitions must be 0 or more (got {partitions})")
        self.queue_type = queue_type
        self.delivery_limit = delivery_limit
        self.publish_timeout = publish_timeout
        self.partitions = partitions
        self._url = url
        entries = tuple(queues)
        #: entry queue → its partition queues (none when partitioning is off).
        self.partitioned: dict[str, tuple[str, ...]] = {
            entry: partition_queues(entry, partitions)
            for entry in entries
            if partitions and entry in PARTITIONED_QUEUES
        }
        #: partition queue → its entry queue.
        self._entry_of = {q: entry for entry, qs in self.partitioned.items() for q in qs}
        self.queues = entries + tuple(self._entry_of)
        # Declaration order matters: each dead-letter queue before the queue feeding it.
        self._arguments: dict[str, dict[str, Any]] = {}
        for queue in entries:
            self._arguments[dlq_name(queue)] = {"x-queue-type": queue_type}
            self._arguments[queue] = queue_arguments(
                queue, queue_type=queue_type, delivery_limit=delivery_limit
            )
        for queue, entry in self._entry_of.items():
            self._arguments[queue] = queue_arguments(
                queue,
                queue_type=queue_type,
                delivery_limit=delivery_limit,
                dead_letter_to=dlq_name(entry),
                single_active_consumer=True,
            )
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        # Strong references: the robust connection holds its channels weakly, and a channel
        # it forgets is not restored after a reconnect.
        self._consumers: set[_RabbitConsumer] = set()

    def __repr__(self) -> str:
        return f"<RabbitBus {mask_url(self._url)} {self.queue_type}>"

    async def start(self) -> None:
        if self._connection is not None:
            raise RuntimeError("the bus is already started")
        connection = await aio_pika.connect_robust(self._url)
        try:
            await self._declare(connection)
            self._publisher = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        log.info("connected to %s; queues declared: %s", mask_url(self._url), self.queues)

    async def _declare(self, connection: AbstractRobustConnection) -> None:
        if self.partitioned:
            await self._declare_exchanges()
        problems: list[str] = []
        channel = await _plain_channel(connection)
        try:
            for name, arguments in self._arguments.items():
                try:
                    await channel.declare_queue(name, durable=True, arguments=arguments)
                except ChannelPreconditionFailed as exc:
                    problems.append(
                        f"queue {name!r} exists with other arguments than this service's "
                        f"{arguments}: {exc}"
                    )
                    # The broker closed the channel with the error.
                    await _close_quietly(channel)
                    channel = await _plain_channel(connection)
            if not problems:
                await self._bind_partitions(connection, channel)
        finally:
            await _close_quietly(channel)
        if problems:
            raise TopologyError("; ".join(problems))

    async def _declare_exchanges(self) -> None:
        """The consistent-hash exchanges, on a connection of their own: a broker without the
        plugin answers an unknown exchange type by closing the whole connection."""
        try:
            connection = await aio_pika.connect(self._url)
        except (*CONNECTION_EXCEPTIONS, OSError) as exc:
            raise TopologyError(
                f"cannot connect to declare the partition exchanges: {exc}"
            ) from exc
        try:
            channel = await connection.channel()
            for entry in self.partitioned:
                await channel.declare_exchange(
                    exchange_name(entry), type=ExchangeType.X_CONSISTENT_HASH, durable=True
                )
        except (AMQPError, *CONNECTION_EXCEPTIONS) as exc:
            raise TopologyError(
                "cannot declare the x-consistent-hash exchanges that OM_PARTITIONS="
                f"{self.partitions} needs ({exc!r}); enable the broker's plugin "
                "(rabbitmq-plugins enable rabbitmq_consistent_hash_exchange) or set "
                "OM_PARTITIONS=0"
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _bind_partitions(
        self, connection: AbstractRobustConnection, channel: AbstractChannel
    ) -> None:
        for entry, queues in self.partitioned.items():
            for queue in queues:
                amqp_queue = await channel.declare_queue(
                    queue, durable=True, arguments=self._arguments[queue]
                )
                # The binding key of a consistent-hash exchange is the queue's weight.
                await amqp_queue.bind(exchange_name(entry), routing_key="1")
            # A partition beyond the configured count that still exists is bound to the
            # exchange and would take its share of the symbols with nobody consuming it.
            extra = partition_queue(entry, self.partitions)
            probe = await _plain_channel(connection)
            try:
                await probe.declare_queue(extra, passive=True)
            except ChannelNotFoundEntity:
                continue
            finally:
                await _close_quietly(probe)
            raise TopologyError(
                f"queue {extra!r} exists: OM_PARTITIONS was larger before. Partitions are "
                "fixed for a deployment; stop every instance, let the partition queues drain "
                "(or move their messages back to the entry queue) and delete the extra ones "
                "with their bindings, or keep the old OM_PARTITIONS"
            )

    async def close(self) -> None:
        """Stop the consumers still running, without grace, then disconnect."""
        for consumer in list(self._consumers):
            await consumer.stop(grace=0)
        connection, self._connection, self._publisher = self._connection, None, None
        if connection is not None:
            await connection.close()

    async def is_healthy(self) -> bool:
        connection, publisher = self._connection, self._publisher
        return (
            connection is not None
            and connection.connected.is_set()
            and not connection.is_closed
            and publisher is not None
            and not publisher.is_closed
        )

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
        properties = Basic.Properties(
            headers=dict(headers or {}),
            content_type=content_type,
            delivery_mode=_PERSISTENT,
            message_id=message_id or uuid.uuid4().hex,
            message_type=type,
            correlation_id=correlation_id,
        )
        await self._publish(queue, body, properties)

    async def publish_to_partition(
        self, entry: str, routing_key: str, body: bytes, properties: Basic.Properties
    ) -> None:
        """Publish to ``entry``'s partition exchange (the router's hop); returns once
        confirmed, raises :class:`PublishError` otherwise."""
        await self._publish(
            entry, body, properties, exchange=exchange_name(entry), routing_key=routing_key
        )

    async def _publish(
        self,
        queue: str,
        body: bytes,
        properties: Basic.Properties,
        *,
        exchange: str = "",
        routing_key: str | None = None,
    ) -> None:
        publisher = self._publisher
        if publisher is None:
            raise PublishError(f"cannot publish to {queue!r}: the bus is not started")
        try:
            # Also bounds the wait for a connection being restored, which has no timeout.
            async with asyncio.timeout(self.publish_timeout):
                if publisher.is_closed:
                    raise ChannelInvalidStateError(f"{publisher!r} closed")
                # The channel's own publish, as aio-pika's Exchange.publish calls it, without
                # building an aio_pika.Message first (with the wrapper, ~a quarter of a
                # publish's Python time; every signal costs several publishes).
                channel = await publisher.get_underlay_channel()
                await channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=queue if routing_key is None else routing_key,
                    properties=properties,
                    mandatory=True,
                )
        except ReturnedError as exc:
            raise PublishError(f"no queue {queue!r}: message returned unroutable") from exc
        except DeliveryError as exc:
            raise PublishError(f"the broker refused the message for {queue!r}: {exc}") from exc
        except TimeoutError as exc:
            raise PublishError(
                f"no confirm for the message to {queue!r} within {self.publish_timeout}s; "
                "it may still have been enqueued"
            ) from exc
        except (AMQPError, ChannelInvalidStateError, ConnectionError, OSError) as exc:
            raise PublishError(f"cannot publish to {queue!r}: {exc!r}") from exc
        faults.checkpoint(faults.published_point(queue))

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> Consumer:
        connection = self._require_connection()
        if queue not in self.queues:
            raise LookupError(f"{queue!r} is not one of this bus's queues")
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1 (got {prefetch})")
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=prefetch)
            amqp_queue = await self.declare_on(channel, queue)
            consumer = _RabbitConsumer(self, queue, handler, channel, amqp_queue)
            await consumer.start()
        except BaseException:
            await _close_quietly(channel)
            raise
        self._consumers.add(consumer)
        return consumer

    async def consumer_channel(self) -> AbstractRobustChannel:
        """A channel the robust connection restores after a reconnect (with its consumers)."""
        return await self._require_connection().channel(publisher_confirms=False)

    async def declare_on(self, channel: AbstractRobustChannel, queue: str) -> AbstractQueue:
        """``queue`` on ``channel``, declared rather than looked up: after a reconnect the
        robust channel declares it again, with the same arguments."""
        return await channel.declare_queue(queue, durable=True, arguments=self._arguments[queue])

    async def get(self, queue: str, *, timeout: float) -> Message | None:  # noqa: ASYNC109
        connection = self._require_connection()
        channel = await _plain_channel(connection)
        try:
            amqp_queue = await _existing(channel, queue)
            incoming = await amqp_queue.get(no_ack=False, fail=False)
            if incoming is None and timeout > 0:
                incoming = await _wait_for_one(channel, amqp_queue, timeout)
            if incoming is None:
                return None
            message = self._to_message(incoming)
            await incoming.ack()
            return message
        finally:
            await _close_quietly(channel)

    async def message_count(self, queue: str) -> int:
        channel = await _plain_channel(self._require_connection())
        try:
            amqp_queue = await _existing(channel, queue)
            return amqp_queue.declaration_result.message_count or 0
        finally:
            await _close_quietly(channel)

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("the bus is not started")
        return self._connection

    def _to_message(self, incoming: AbstractIncomingMessage) -> Message:
        received = incoming.headers or {}
        broker_count = _as_count(received.get(BROKER_COUNT_HEADER))
        own_count = _as_count(received.get(OWN_COUNT_HEADER))
        # Quorum queues count every return themselves; on classic queues the redelivered flag
        # adds the one delivery that ended without our requeue (see the module docstring).
        count = max(broker_count, own_count + (1 if incoming.redelivered else 0))
        return Message(
            body=incoming.body,
            message_id=incoming.message_id,
            type=incoming.type,
            correlation_id=incoming.correlation_id,
            content_type=incoming.content_type,
            headers=_publisher_headers(incoming),
            redelivered=bool(incoming.redelivered) or count > 0,
            delivery_count=count,
            timestamp=_utc(incoming.timestamp),
        )

    async def _settle(
        self, queue: str, incoming: AbstractIncomingMessage, message: Message, verdict: Verdict
    ) -> None:
        if verdict.settlement is Settlement.ACK:
            faults.checkpoint(faults.before_ack_point(queue))
            await _ack(queue, incoming)
        elif verdict.settlement is Settlement.DEAD_LETTER:
            # A partition's dead letters go with its entry queue's: one place to look, and
            # the entry queue is where to send them back to.
            entry = self._entry_of.get(queue, queue)
            headers = {
                **_publisher_headers(incoming),
                ERROR_HEADER: verdict.reason,
                ORIGINAL_QUEUE_HEADER: entry,
            }
            await self._republish_then_ack(
                dlq_name(entry),
                queue,
                incoming,
                headers,
                before_ack=lambda: self._sink_dead_letter(entry, message, verdict.reason),
            )
        elif self.queue_type == "classic":
            headers = {
                **_publisher_headers(incoming),
                OWN_COUNT_HEADER: message.delivery_count + 1,
            }
            await self._republish_then_ack(queue, queue, incoming, headers)
        else:
            await _nack(queue, incoming)

    async def _republish_then_ack(
        self,
        target: str,
        queue: str,
        incoming: AbstractIncomingMessage,
        headers: dict[str, Any],
        *,
        before_ack: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        try:
            await self._publish(target, incoming.body, _copy(incoming, headers))
        except PublishError:
            log.exception(
                "cannot move message %s from %s to %s; returning it to %s",
                incoming.message_id,
                queue,
                target,
                queue,
            )
            await _nack(queue, incoming)
            return
        if before_ack is not None:
            await before_ack()
        await _ack(queue, incoming)


class _RabbitConsumer(Consumer):
    def __init__(
        self,
        bus: RabbitBus,
        queue: str,
        handler: Handler,
        channel: AbstractRobustChannel,
        amqp_queue: AbstractQueue,
    ) -> None:
        self._bus = bus
        self._queue = queue
        self._handler = handler
        self._channel = channel
        self._amqp_queue = amqp_queue
        self._tag: str | None = None
        # One task per delivery, and inside it the handler's own task: stop() cancels only
        # handlers, never a settlement half done.
        self._deliveries: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[Verdict]] = set()
        self._stopping = False

    async def start(self) -> None:
        self._tag = await self._amqp_queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._stopping:
            # Left unsettled: closing the channel in stop() returns it to the queue.
            return
        task = asyncio.create_task(self._deliver(incoming))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, incoming: AbstractIncomingMessage) -> None:
        message = self._bus._to_message(incoming)
        verdict_task = asyncio.create_task(
            judge(
                self._handler,
                message,
                queue=self._queue,
                delivery_limit=self._bus.delivery_limit,
                activity=self._bus.activity,
            )
        )
        self._handlers.add(verdict_task)
        try:
            verdict = await verdict_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return  # stop() gave up on the handler: closing the channel returns the message
        finally:
            self._handlers.discard(verdict_task)
        await self._bus._settle(self._queue, incoming, message, verdict)

    async def stop(self, grace: float) -> None:
        if self._stopping:
            return
        self._stopping = True
        # With the connection down there is no consumer to cancel, and cancelling would wait
        # for the reconnect.
        if self._tag is not None and not self._channel.is_closed:
            try:
                async with asyncio.timeout(_CONTROL_TIMEOUT):
                    await self._amqp_queue.cancel(self._tag)
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                log.warning("cannot cancel the consumer of %s: %r", self._queue, exc)
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=max(grace, 0))
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        # Closing the channel hands every unacknowledged delivery back to the queue.
        await _close_quietly(self._channel)
        self._bus._consumers.discard(self)


async def _plain_channel(connection: AbstractRobustConnection) -> AbstractChannel:
    """A short-lived channel the robust connection does not restore (nor reopen on error)."""
    channel = aio_pika.Channel(connection, publisher_confirms=False)
    await channel.initialize()
    return channel


async def _close_quietly(channel: AbstractChannel) -> None:
    try:
        async with asyncio.timeout(_CONTROL_TIMEOUT):
            await channel.close()
    except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
        log.debug("closing channel %s: %r", channel, exc)


async def _existing(channel: AbstractChannel, queue: str) -> AbstractQueue:
    try:
        return await channel.declare_queue(queue, passive=True)
    except ChannelNotFoundEntity:
        raise LookupError(f"no queue {queue!r}") from None


async def _wait_for_one(
    channel: AbstractChannel,
    amqp_queue: AbstractQueue,
    timeout: float,  # noqa: ASYNC109
) -> AbstractIncomingMessage | None:
    # With prefetch 1 the broker hands this consumer at most the one message we take.
    await channel.set_qos(prefetch_count=1)
    arrived: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()

    async def on_message(incoming: AbstractIncomingMessage) -> None:
        if not arrived.done():
            arrived.set_result(incoming)

    tag = await amqp_queue.consume(on_message, no_ack=False)
    try:
        await asyncio.wait({arrived}, timeout=timeout)
    finally:
        await amqp_queue.cancel(tag)
    return arrived.result() if arrived.done() else None


async def _ack(queue: str, incoming: AbstractIncomingMessage, *, multiple: bool = False) -> None:
    try:
        await incoming.ack(multiple=multiple)
    except CONNECTION_EXCEPTIONS as exc:
        log.warning(
            "cannot acknowledge message %s from %s (%r); the broker will deliver it again",
            incoming.message_id,
            queue,
            exc,
        )


async def _nack(queue: str, incoming: AbstractIncomingMessage) -> None:
    try:
        await incoming.nack(requeue=True)
    except CONNECTION_EXCEPTIONS as exc:
        # The channel is gone, and with it the delivery: the broker requeues it anyway.
        log.warning("cannot requeue message %s from %s: %r", incoming.message_id, queue, exc)


def _copy(incoming: AbstractIncomingMessage, headers: dict[str, Any]) -> Basic.Properties:
    """The properties of the message as received, with ``headers``; no expiry or user id,
    which could drop it."""
    return Basic.Properties(
        headers=headers,
        content_type=incoming.content_type,
        content_encoding=incoming.content_encoding,
        delivery_mode=_PERSISTENT,
        priority=incoming.priority,
        correlation_id=incoming.correlation_id,
        reply_to=incoming.reply_to,
        message_id=incoming.message_id,
        timestamp=incoming.timestamp,
        message_type=incoming.type,
        app_id=incoming.app_id,
    )


def _publisher_headers(incoming: AbstractIncomingMessage) -> dict[str, Any]:
    """The headers without the ones the bus counts deliveries with."""
    return {k: v for k, v in (incoming.headers or {}).items() if k not in _COUNT_HEADERS}


def _utc(value: object) -> datetime | None:
    """The AMQP timestamp as an aware UTC datetime (the client decodes it so already)."""
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
