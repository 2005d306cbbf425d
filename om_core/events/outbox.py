"""Transactional outbox: an event is a row written in the same transaction as its change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from om_core.db.models import OutboxEvent, table
from om_core.db.session import AsyncSession
from om_core.db.types import utcnow
from om_core.events.payloads import dumps
from om_core.messaging.topology import ORDER_EVENTS_QUEUE

__all__ = ["OUTBOX", "add_event", "insert_events"]

OUTBOX = table(OutboxEvent)


def add_event(session: AsyncSession, event: dict[str, Any]) -> OutboxEvent:
    """Stage ``event`` in ``session``'s transaction; the relay publishes it after commit."""
    row = OutboxEvent(**_values(event))
    session.add(row)
    return row


async def insert_events(conn: AsyncConnection, *events: dict[str, Any]) -> None:
    """The same as :func:`add_event`, for hot paths that write with Core statements."""
    if events:
        await conn.execute(insert(OUTBOX), [_values(e) for e in events])


def _values(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "queue": ORDER_EVENTS_QUEUE,
        "correlation_id": event.get("signal_id"),
        "payload": dumps(event),
        "created_at": utcnow(),
        "attempts": 0,
    }
