from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from om_core.db import migrate
from om_core.db.models import OutboxEvent
from om_core.db.session import create_engine, create_session_factory
from om_core.db.types import utcnow
from om_core.events.relay import OutboxRelay
from om_core.messaging.memory import MemoryBus


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
