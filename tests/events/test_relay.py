from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from om_core.db import migrate
from om_core.db.models import OutboxEvent
from om_core.db.session import create_engine, create_session_factory
from om_core.db.types import utcnow
from om_core.events.relay import OutboxRelay
from om_core.messaging.base import PublishError
from om_core.messaging.memory import MemoryBus
from om_core.messaging.topology import ORDER_EVENTS_QUEUE


async def test_prune_deletes_only_old_sent_rows(db_url: str) -> None:
    await migrate.upgrade(db_url)
    engine = create_engine(db_url)
    sessions = create_session_factory(engine)
    bus = MemoryBus(delivery_limit=3)
    await bus.start()
    try:
        now = utcnow()
        async with sessions() as session, session.begin():
            for n, sent in enumerate([now - timedelta(days=8), now - timedelta(days=1), None]):
                session.add(
                    OutboxEvent(
                        event_id=f"00000000-0000-0000-0000-00000000000{n}",
                        event_type="order.created",
                        queue="q",
                        payload="{}",
                        sent_at=sent,
                    )
                )
        relay = OutboxRelay(sessions, bus, retention=timedelta(days=7))
        assert await relay.prune() == 1
        async with sessions() as session:
            left = (await session.exec(select(OutboxEvent.event_id))).all()
        assert sorted(left) == [
            "00000000-0000-0000-0000-000000000001",
            "00000000-0000-0000-0000-000000000002",
        ]
    finally:
        await bus.close()
        await engine.dispose()


class RefusesOnce(MemoryBus):
    """A broker that refuses one event the first time it is published, as RabbitMQ's nack
    would, and yields on every publish like a real confirm wait."""

    def __init__(self, refuse: str) -> None:
        super().__init__(delivery_limit=3)
        self.refuse: str | None = refuse
        self.published: list[str] = []

    async def publish(self, queue: str, body: bytes, **kwargs: Any) -> None:
        await asyncio.sleep(0)  # the confirm is awaited: other publishes are in flight
        if kwargs.get("message_id") == self.refuse:
            self.refuse = None
            raise PublishError("nack")
        await super().publish(queue, body, **kwargs)
        self.published.append(str(kwargs["message_id"]))


async def test_a_refused_event_is_published_later_and_none_is_lost(db_url: str) -> None:
    await migrate.upgrade(db_url)
    engine = create_engine(db_url)
    sessions = create_session_factory(engine)
    ids = [f"00000000-0000-0000-0000-0000000000{n:02d}" for n in range(20)]
    bus = RefusesOnce(refuse=ids[5])
    await bus.start()
    try:
        async with sessions() as session, session.begin():
            for event_id in ids:
                session.add(
                    OutboxEvent(
                        event_id=event_id,
                        event_type="order.created",
                        queue=ORDER_EVENTS_QUEUE,
                        payload="{}",
                    )
                )
        relay = OutboxRelay(sessions, bus, in_flight=4)
        first = await relay.publish_pending()
        # The refusal stops the batch: what was in flight finishes, nothing more starts.
        assert 5 <= first < len(ids) - 1
        assert bus.published == [i for i in ids[: first + 1] if i != ids[5]]
        async with sessions() as session:
            refused = (
                await session.exec(select(OutboxEvent).where(col(OutboxEvent.event_id) == ids[5]))
            ).one()
        assert refused.sent_at is None and refused.attempts == 1 and refused.last_error
        assert await relay.publish_pending() == len(ids) - first
        assert sorted(bus.published) == ids  # every event once, the refused one late
        async with sessions() as session:
            unsent = (
                await session.exec(select(OutboxEvent).where(col(OutboxEvent.sent_at).is_(None)))
            ).all()
        assert unsent == []
    finally:
        await bus.close()
        await engine.dispose()
