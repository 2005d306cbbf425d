"""A running Order Manager for integration tests: real database, real bus, paper exchange."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from om_core.config import load_settings
from om_core.db.models import Order, OutboxEvent, SignalOrderRelationship, SignalRecord
from om_core.messaging.base import Message
from om_core.messaging.topology import ORDER_EVENTS_QUEUE, SIGNALS_QUEUE
from om_core.service import Service
from plugins_builtin.paper.exchange import PaperExchange
from tests.conftest import wait_for
from tests.events_schema import validate_event


@dataclass
class Stack:
    service: Service

    @property
    def paper(self) -> PaperExchange:
        assert isinstance(self.service.exchange, PaperExchange)
        return self.service.exchange

    async def publish(self, signal: Mapping[str, Any] | bytes) -> None:
        body = signal if isinstance(signal, bytes) else json.dumps(signal).encode()
        await self.service.bus.publish(SIGNALS_QUEUE, body)

    async def signal_row(self, signal_id: str) -> SignalRecord | None:
        async with self.service.sessions() as session:
            return (
                await session.exec(
                    select(SignalRecord).where(col(SignalRecord.signal_id) == signal_id)
                )
            ).one_or_none()

    async def outcome(self, signal_id: str, *, timeout: float = 15.0) -> SignalRecord:
        """Await the signal's final outcome (placed or rejected)."""

        async def final() -> SignalRecord | None:
            row = await self.signal_row(signal_id)
            return row if row is not None and row.status in ("placed", "rejected") else None

        return await wait_for(final, timeout=timeout, message=f"outcome of {signal_id}")

    async def orders(self, signal_id: str | None = None) -> list[Order]:
        async with self.service.sessions() as session:
            query = select(Order).order_by(col(Order.id))
            if signal_id is not None:
                query = query.where(col(Order.signal_id) == signal_id)
            return list((await session.exec(query)).all())

    async def relationships(self, signal_id: str) -> list[SignalOrderRelationship]:
        async with self.service.sessions() as session:
            query = select(SignalOrderRelationship).where(
                col(SignalOrderRelationship.signal_id) == signal_id
            )
            return list((await session.exec(query)).all())

    async def next_message(self, queue: str, *, timeout: float = 10.0) -> Message:
        message = await self.service.bus.get(queue, timeout=timeout)
        assert message is not None, f"no message on {queue} within {timeout}s"
        return message

    async def events(
        self, count: int, *, timeout: float = 10.0, types: set[str] | None = None
    ) -> list[dict[str, Any]]:
        """The next ``count`` events (of ``types``, skipping others) on the events queue."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            message = await self.next_message(ORDER_EVENTS_QUEUE, timeout=timeout)
            event = json.loads(message.body)
            assert message.message_id == event["event_id"]
            assert message.type == event["event_type"]
            validate_event(event)
            if types is None or event["event_type"] in types:
                out.append(event)
        return out

    async def outbox_drained(self, *, timeout: float = 10.0) -> None:
        async def drained() -> bool:
            async with self.service.sessions() as session:
                rows = await session.exec(
                    select(OutboxEvent.id).where(col(OutboxEvent.sent_at).is_(None))
                )
                return rows.first() is None

        await wait_for(drained, timeout=timeout, message="outbox drained")

    async def all_events(self) -> list[dict[str, Any]]:
        """Every event published so far (the outbox is drained first)."""
        await self.outbox_drained()
        out = []
        while (message := await self.service.bus.get(ORDER_EVENTS_QUEUE, timeout=0.2)) is not None:
            event = json.loads(message.body)
            validate_event(event)
            out.append(event)
        return out

    async def order_status(
        self, client_order_id: str, status: str, *, timeout: float = 10
    ) -> Order:
        async def reached() -> Order | None:
            async with self.service.sessions() as session:
                order = (
                    await session.exec(
                        select(Order).where(col(Order.client_order_id) == client_order_id)
                    )
                ).first()
            return order if order is not None and order.status == status else None

        return await wait_for(reached, timeout=timeout, message=f"{client_order_id} {status}")


@asynccontextmanager
async def running(
    db_url: str,
    broker_url: str,
    *,
    env: Mapping[str, str] | None = None,
    plugin_config: Mapping[str, Mapping[str, Any]] | None = None,
    before_commit: Callable[[str], Awaitable[None]] | None = None,
    consume: bool = True,
) -> AsyncIterator[Stack]:
    base = {
        "OM_DATABASE_URL": db_url,
        "OM_BROKER_URL": broker_url,
        "OM_DB_AUTO_MIGRATE": "true",
        "OM_API_ENABLED": "false",
        "OM_PREFETCH": "8",
        "OM_SHUTDOWN_GRACE_SECONDS": "5",
        "OM_PLUGIN_PAPER_RANDOM_WALK": "false",
        **(env or {}),
    }
    settings = load_settings(env=base)
    settings.plugin_config = {k: dict(v) for k, v in (plugin_config or {}).items()}
    service = Service(settings, env=base, before_commit=before_commit)
    try:
        await service.start(consume=consume)
        yield Stack(service)
    finally:
        await service.stop()
