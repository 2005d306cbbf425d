"""Publish outbox rows to the broker, in order, with publisher confirms.

One relay publishes at a time across all instances (a transaction-scoped advisory lock per
batch), in commit order. Up to ``in_flight`` publishes await their confirms at once: waiting
for each confirm before the next publish would cap the relay at one event per broker round
trip. The broker enqueues them in publish order; only when it refuses one (a nack or a lost
connection) can that event, published again later, arrive after events committed after it —
``in_flight=1`` rules that out too, at the cost of throughput. Delivery is at-least-once:
consumers de-duplicate by ``event_id`` (the AMQP ``message_id``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlmodel import col

from om_core import faults
from om_core.db.locks import try_xact_lock
from om_core.db.models import OutboxEvent
from om_core.db.session import SessionFactory
from om_core.db.types import utcnow
from om_core.events.outbox import OUTBOX
from om_core.messaging.base import MessageBus, PublishError
from om_core.plugins.facade import PluginHooks

__all__ = ["OutboxRelay"]

log = logging.getLogger(__name__)

_RELAY_LOCK = "om:outbox-relay"


class _NotTried:
    """A row of the batch left for the next one because an earlier row was refused."""


_NOT_TRIED = _NotTried()
_PRUNE_EVERY = 3600.0

# Built once: the relay runs these for every batch, at low rates for every event, and
# building a statement costs about as much CPU as executing it.
_UNSENT = (
    select(
        OUTBOX.c.id,
        OUTBOX.c.event_id,
        OUTBOX.c.event_type,
        OUTBOX.c.queue,
        OUTBOX.c.correlation_id,
        OUTBOX.c.payload,
    )
    .where(OUTBOX.c.sent_at.is_(None))
    .order_by(OUTBOX.c.id)
    .limit(bindparam("batch_size"))
)
_MARK_SENT = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(sent_at=bindparam("now"), attempts=OUTBOX.c.attempts + 1)
)
_MARK_REFUSED = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(attempts=OUTBOX.c.attempts + 1, last_error=bindparam("error"))
)


class OutboxRelay:
    def __init__(
        self,
        factory: SessionFactory,
        bus: MessageBus,
        hooks: PluginHooks | None = None,
        *,
        on_published: Callable[[Sequence[str]], None] | None = None,
        batch_size: int = 200,
        in_flight: int = 64,
        poll_interval: float = 1.0,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self._factory = factory
        self._bus = bus
        self._hooks = hooks
        #: Told the payloads of every batch the broker confirmed (the console's live feed).
        self._on_published = on_published
        self._batch_size = batch_size
        self._in_flight = max(1, in_flight)
        self._poll_interval = poll_interval
        self._retention = retention
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def notify(self) -> None:
        """Something was committed to the outbox: publish soon rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        # Restartable: leadership stops and starts the relay as it moves between instances.
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except TimeoutError:
                self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        backoff = self._poll_interval
        next_prune = time.monotonic() + 60
        while not self._stopping:
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + _PRUNE_EVERY
                try:
                    pruned = await self.prune()
                    if pruned:
                        log.info("pruned %d sent outbox rows", pruned)
                except Exception:
                    log.exception("pruning the outbox failed; trying again later")
            try:
                published = await self.publish_pending()
                backoff = self._poll_interval
                if published >= self._batch_size:
                    continue  # a full batch: more may be waiting
                # Otherwise the batch took every unsent row; rows committed since then rang
                # the bell (notify), so the wait below returns at once for them.
            except Exception:
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                backoff = min(backoff * 2, 30.0)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
            self._wake.clear()

    async def publish_pending(self) -> int:
        """Publish one batch of unsent events; returns how many were published."""
        async with self._factory() as session, session.begin():
            if not await try_xact_lock(session, _RELAY_LOCK):
                return 0
            conn = await session.connection()
            rows = (await conn.execute(_UNSENT, {"batch_size": self._batch_size})).all()
            outcomes = await self._publish(rows)
            published = [row for row, error in zip(rows, outcomes, strict=True) if error is None]
            if published:
                await conn.execute(
                    _MARK_SENT, {"ids": [row.id for row in published], "now": utcnow()}
                )
            for row, error in zip(rows, outcomes, strict=True):
                if isinstance(error, PublishError):
                    log.warning("outbox event %s not confirmed: %s", row.event_id, error)
                    await conn.execute(_MARK_REFUSED, {"row_id": row.id, "error": str(error)[:500]})
        faults.checkpoint("outbox.marked_sent")
        if self._on_published is not None and published:
            try:
                self._on_published([row.payload for row in published])
            except Exception:
                log.exception("a listener to published events failed")
        if self._hooks is not None and self._hooks.observes_order_events:
            for row in published:
                self._hooks.order_event(json.loads(row.payload))
        return len(published)

    async def _publish(self, rows: Sequence[Any]) -> list[PublishError | _NotTried | None]:
        """Publish ``rows`` in order, ``in_flight`` at a time; ``None`` for each confirmed one.

        After a refusal no further row is started (they are published in a later batch).
        """
        outcomes: list[PublishError | _NotTried | None] = [_NOT_TRIED] * len(rows)
        window = asyncio.Semaphore(self._in_flight)
        refused = False

        async def one(index: int, row: Any) -> None:
            nonlocal refused
            try:
                await self._bus.publish(
                    row.queue,
                    row.payload.encode("utf-8"),
                    message_id=row.event_id,
                    type=row.event_type,
                    correlation_id=row.correlation_id,
                )
                outcomes[index] = None
            except PublishError as exc:
                refused = True
                outcomes[index] = exc
            finally:
                window.release()

        tasks = []
        for index, row in enumerate(rows):
            await window.acquire()
            if refused:
                window.release()
                break
            # Tasks start in creation order, so the broker sees the rows in id order.
            tasks.append(asyncio.create_task(one(index, row)))
        await asyncio.gather(*tasks)
        return outcomes

    async def prune(self) -> int:
        """Delete sent rows older than the retention period."""
        cutoff = utcnow() - self._retention
        async with self._factory() as session, session.begin():
            result = await session.exec(
                delete(OutboxEvent).where(
                    col(OutboxEvent.sent_at).is_not(None),
                    col(OutboxEvent.sent_at) < cutoff,
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)
