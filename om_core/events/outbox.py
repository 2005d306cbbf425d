"""Transactional outbox: an event is a row written in the same transaction as its change."""

from __future__ import annotations

from typing import Any

from om_core.db.models import OutboxEvent
from om_core.db.session import AsyncSession
from om_core.events.payloads import dumps
from om_core.messaging.topology import ORDER_EVENTS_QUEUE

__all__ = ["add_event"]


def add_event(session: AsyncSession, event: dict[str, Any]) -> OutboxEvent:
    """Stage ``event`` in ``session``'s transaction; the relay publishes it after commit."""
    row = OutboxEvent(
        event_id=event["event_id"],
        event_type=event["event_type"],
        queue=ORDER_EVENTS_QUEUE,
        correlation_id=event.get("signal_id"),
        payload=dumps(event),
    )
    session.add(row)
    return row
