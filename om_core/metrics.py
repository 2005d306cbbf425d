"""Prometheus metrics: what the engine counts as it works, and what is read at scrape time.

The engine reports through the helper functions (``count_signal``,
``observe_placement_latency``, ``count_exchange_request``, ``set_rate_limit_headroom``); they
never raise and cost a dictionary lookup. Gauges that describe stored state (orders by
status, the outbox backlog, dead-letter and consumer queues) are read from the database and
the broker when ``/metrics`` is scraped, by :class:`StateGauges`, so they are true even after
a restart and across several instances sharing one database.

Every metric lives in :data:`REGISTRY`, not in prometheus_client's global registry, so the
process's own collectors (GC, platform) and anything a plugin registers globally stay out of
the Order Manager's exposition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func
from sqlmodel import col, select

from om_core.db.models import Order, OutboxEvent
from om_core.db.session import SessionFactory
from om_core.db.types import utcnow
from om_core.messaging.base import MessageBus, dlq_name
from om_core.messaging.topology import ALL_QUEUES, CONSUMED_QUEUES
from om_core.orders.status import OrderStatus

__all__ = [
    "CONTENT_TYPE",
    "REGISTRY",
    "StateGauges",
    "count_cancel",
    "count_exchange_request",
    "count_routed",
    "count_signal",
    "observe_hook",
    "observe_placement_latency",
    "render",
    "set_cluster_state",
    "set_exchange_pause",
    "set_rate_limit_headroom",
]

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Exchange result codes that mean success (``0`` as many exchanges say, or an adapter's "ok").
_SUCCESS_CODES = frozenset({"", "0", "ok", "OK"})

SIGNALS = Counter(
    "om_signals",
    "Signals by outcome: placed, rejected, dead_lettered, duplicate, in_doubt.",
    ["outcome"],
    registry=REGISTRY,
)
PLACEMENT_LATENCY = Histogram(
    "om_order_placement_latency_seconds",
    "Seconds from receiving a signal to the exchange accepting its order.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
EXCHANGE_LATENCY = Histogram(
    "om_exchange_request_duration_seconds",
    "Duration of exchange REST requests, by endpoint.",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
EXCHANGE_REQUESTS = Counter(
    "om_exchange_requests",
    "Exchange REST requests by endpoint and result code (0 is success).",
    ["endpoint", "code"],
    registry=REGISTRY,
)
EXCHANGE_ERRORS = Counter(
    "om_exchange_errors",
    "Exchange REST requests that failed, by endpoint and error code.",
    ["endpoint", "code"],
    registry=REGISTRY,
)
RATE_LIMIT_HEADROOM = Gauge(
    "om_exchange_rate_limit_headroom",
    "Requests left in the exchange's current rate-limit window, by limit group.",
    ["group"],
    registry=REGISTRY,
)
ORDERS = Gauge(
    "om_orders",
    "Orders in the database by status (read at scrape time).",
    ["status"],
    registry=REGISTRY,
)
OUTBOX_BACKLOG = Gauge(
    "om_outbox_backlog",
    "Events committed to the outbox and not yet published (read at scrape time).",
    registry=REGISTRY,
)
OUTBOX_OLDEST_AGE = Gauge(
    "om_outbox_oldest_unsent_age_seconds",
    "Age of the oldest unpublished outbox event; 0 when none waits (read at scrape time).",
    registry=REGISTRY,
)
DLQ_MESSAGES = Gauge(
    "om_dlq_messages",
    "Messages waiting in each dead-letter queue (read at scrape time).",
    ["queue"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "om_consumer_lag_messages",
    "Messages ready for delivery in each queue this service consumes; messages delivered and "
    "not yet acknowledged are not counted (see om_consumer_unacked_messages) (read at scrape "
    "time).",
    ["queue"],
    registry=REGISTRY,
)
CONSUMER_UNACKED = Gauge(
    "om_consumer_unacked_messages",
    "Messages this instance holds delivered and not yet acknowledged, per queue.",
    ["queue"],
    registry=REGISTRY,
)
CONSUMER_OLDEST_UNACKED_AGE = Gauge(
    "om_consumer_oldest_unacked_age_seconds",
    "Seconds the oldest message this instance holds unacknowledged has been held, per queue; "
    "0 when none (above OM_READY_MAX_UNACKED_SECONDS, /ready says not ready).",
    ["queue"],
    registry=REGISTRY,
)
CONSUMER_IN_RETRY = Gauge(
    "om_consumer_messages_in_retry",
    "Messages waiting to retry a transient failure (database or broker connection, "
    "serialization failure, deadlock, lock timeout, exchange unreachable), per queue; each is "
    "dead-lettered if it still fails after OM_RETRY_SECONDS.",
    ["queue"],
    registry=REGISTRY,
)
EXCHANGE_PAUSED_UNTIL = Gauge(
    "om_exchange_paused_until_timestamp_seconds",
    "While the exchange refuses this service (IP ban, throttling), the Unix time trading "
    "resumes; 0 otherwise.",
    ["reason"],
    registry=REGISTRY,
)
SOURCE_UP = Gauge(
    "om_metrics_source_up",
    "1 when the last scrape could read the source (database, broker); the gauges read from "
    "a source that is down keep their previous values.",
    ["source"],
    registry=REGISTRY,
)


def set_exchange_pause(reason: str, until: float) -> None:
    """Trading waits for the exchange until ``until`` (Unix seconds; 0: not any more)."""
    EXCHANGE_PAUSED_UNTIL.labels(reason=reason).set(until)


HOOK_DURATION = Histogram(
    "om_plugin_hook_duration_seconds",
    "Duration of each plugin hook call (decision hooks and event observers), by plugin and hook.",
    ["plugin", "hook"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
HOOK_OVER_BUDGET = Counter(
    "om_plugin_hook_over_budget",
    "Plugin hook calls that took longer than OM_HOOK_BUDGET_MS, by plugin and hook.",
    ["plugin", "hook"],
    registry=REGISTRY,
)
_hook_series: dict[tuple[str, str], tuple[Any, Any]] = {}


def observe_hook(plugin: str, hook: str, seconds: float, *, over_budget: bool) -> None:
    """One call of ``plugin``'s ``hook`` took ``seconds`` (called from any thread)."""
    series = _hook_series.get((plugin, hook))
    if series is None:
        series = (
            HOOK_DURATION.labels(plugin=plugin, hook=hook),
            HOOK_OVER_BUDGET.labels(plugin=plugin, hook=hook),
        )
        _hook_series[(plugin, hook)] = series
    series[0].observe(seconds)
    if over_budget:
        series[1].inc()


CLUSTER_MEMBERS = Gauge(
    "om_cluster_members",
    "Instances of this deployment alive on the coordination database, as this one sees them "
    "(0 while its own coordination session is down).",
    registry=REGISTRY,
)
CLUSTER_SLOTS = Gauge(
    "om_cluster_slots_running",
    "Exclusive work this instance runs, by group: roles (singletons = outbox relay, "
    "reconciler, snapshots; partition routers) and partition consumers.",
    ["group"],
    registry=REGISTRY,
)
ROUTED = Counter(
    "om_partition_routed",
    "Messages the partition router published to an entry queue's partitions (a split "
    "order-stream message counts once per symbol).",
    ["queue"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "om_leader",
    "1 when this instance runs the singletons (outbox relay, reconciler, snapshots).",
    registry=REGISTRY,
)


def set_cluster_state(*, members: int, running: Mapping[str, int], leader: bool) -> None:
    """What the coordinator runs here now (see :mod:`om_core.cluster`)."""
    CLUSTER_MEMBERS.set(members)
    for group, count in running.items():
        CLUSTER_SLOTS.labels(group=group).set(count)
    LEADER.set(1 if leader else 0)


def count_routed(queue: str, count: int = 1) -> None:
    ROUTED.labels(queue=queue).inc(count)


ORDER_CANCELS = Counter(
    "om_order_cancels",
    "Cancel requests by outcome: accepted, rejected (the exchange refused), unavailable "
    "(not sent), unknown (answer lost), duplicate (one already pending or accepted), "
    "not_open (the order was already final).",
    ["outcome"],
    registry=REGISTRY,
)


def count_cancel(outcome: str) -> None:
    """One cancel request reached ``outcome``."""
    ORDER_CANCELS.labels(outcome=outcome).inc()


def count_signal(outcome: str) -> None:
    """One signal reached ``outcome`` (``placed``, ``rejected``, ``dead_lettered``,
    ``duplicate``, ``in_doubt``)."""
    SIGNALS.labels(outcome=outcome).inc()


def observe_placement_latency(seconds: float) -> None:
    """Signal received → exchange accepted its order, in seconds."""
    PLACEMENT_LATENCY.observe(seconds)


def count_exchange_request(endpoint: str, code: str | int, seconds: float) -> None:
    """One exchange request to ``endpoint`` answered with ``code`` after ``seconds``.

    ``code`` is the exchange's own result code (``0`` or ``ok`` for success)
    or a transport failure name such as ``timeout``; anything but success counts as an error.
    """
    code = str(code)
    EXCHANGE_LATENCY.labels(endpoint=endpoint).observe(seconds)
    EXCHANGE_REQUESTS.labels(endpoint=endpoint, code=code).inc()
    if code not in _SUCCESS_CODES:
        EXCHANGE_ERRORS.labels(endpoint=endpoint, code=code).inc()


def set_rate_limit_headroom(group: str, value: float) -> None:
    """Requests left in the current window of rate-limit ``group`` (e.g. ``order/create``)."""
    RATE_LIMIT_HEADROOM.labels(group=group).set(value)


def render() -> bytes:
    """The exposition in Prometheus text format (``CONTENT_TYPE``)."""
    return generate_latest(REGISTRY)


_Reader = Callable[[], Awaitable[None]]


class StateGauges:
    """Refreshes the gauges read from the database and the broker, for one service.

    Scrapes closer together than ``min_interval`` share one refresh, so an unauthenticated
    ``/metrics`` cannot be used to load the database; each source gets ``timeout`` seconds.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        bus: MessageBus,
        *,
        min_interval: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._min_interval = min_interval
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._refreshed_at: float | None = None

    async def refresh(self) -> None:
        # In-process state: no I/O, always fresh.
        self._read_consumers()
        async with self._lock:
            now = time.monotonic()
            if self._refreshed_at is not None and now - self._refreshed_at < self._min_interval:
                return
            await self._read("database", self._read_database)
            await self._read("broker", self._read_broker)
            self._refreshed_at = time.monotonic()

    async def _read(self, source: str, reader: _Reader) -> None:
        try:
            await asyncio.wait_for(reader(), timeout=self._timeout)
        except Exception:
            log.warning("metrics: could not read the %s", source, exc_info=True)
            SOURCE_UP.labels(source=source).set(0)
        else:
            SOURCE_UP.labels(source=source).set(1)

    def _read_consumers(self) -> None:
        activity = self._bus.activity
        partitioned = getattr(self._bus, "partitioned", None)
        partitions = [q for qs in partitioned.values() for q in qs] if partitioned else []
        for queue in dict.fromkeys([*CONSUMED_QUEUES, *partitions, *activity.queues()]):
            CONSUMER_UNACKED.labels(queue=queue).set(activity.unacked(queue))
            CONSUMER_OLDEST_UNACKED_AGE.labels(queue=queue).set(activity.oldest_unacked_age(queue))
            CONSUMER_IN_RETRY.labels(queue=queue).set(activity.in_retry(queue))

    async def _read_database(self) -> None:
        async with self._sessions() as session:
            by_status = (
                await session.exec(select(Order.status, func.count()).group_by(col(Order.status)))
            ).all()
            unsent, oldest = (
                await session.exec(
                    select(func.count(), func.min(OutboxEvent.created_at)).where(
                        col(OutboxEvent.sent_at).is_(None)
                    )
                )
            ).one()
        counts = {str(status): int(n) for status, n in by_status}
        # Every known status is exported, at 0 when absent, so a series never just vanishes.
        for status in [s.value for s in OrderStatus] + sorted(set(counts) - set(OrderStatus)):
            ORDERS.labels(status=status).set(counts.get(status, 0))
        OUTBOX_BACKLOG.set(int(unsent))
        age = 0.0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0.0)
        OUTBOX_OLDEST_AGE.set(age)

    async def _read_broker(self) -> None:
        for queue in ALL_QUEUES:
            DLQ_MESSAGES.labels(queue=dlq_name(queue)).set(
                await self._bus.message_count(dlq_name(queue))
            )
        # Partitioned (OM_PARTITIONS), the entry queues feed partition queues: both lag.
        partitioned = getattr(self._bus, "partitioned", None)
        partitions = [q for qs in partitioned.values() for q in qs] if partitioned else []
        for queue in (*CONSUMED_QUEUES, *partitions):
            CONSUMER_LAG.labels(queue=queue).set(await self._bus.message_count(queue))
