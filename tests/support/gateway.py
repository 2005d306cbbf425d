"""A stream gateway's context on a test's own message bus (what ``om ws-gateway`` builds on
the service's bus)."""

from __future__ import annotations

from om_core.messaging.base import MessageBus
from om_core.messaging.topology import ORDER_UPDATES_QUEUE
from om_plugins import GatewayContext


def bus_context(bus: MessageBus, queue: str = ORDER_UPDATES_QUEUE) -> GatewayContext:
    """Publishes onto ``queue`` of ``bus`` (with the bus's publisher confirms)."""

    async def publish(body: bytes, message_id: str, type: str) -> None:
        await bus.publish(queue, body, message_id=message_id, type=type)

    return GatewayContext(publish=publish)
