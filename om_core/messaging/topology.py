"""The queues this service talks over. Names are a contract with the rest of the stack."""

from __future__ import annotations

SIGNALS_QUEUE = "model-service.trading_signals"
ORDER_UPDATES_QUEUE = "ws-gateway.order"
ORDER_EVENTS_QUEUE = "order-manager.order_events"

#: Queues we consume; each gets a dead-letter queue ``<name>.dlq``.
CONSUMED_QUEUES = (SIGNALS_QUEUE, ORDER_UPDATES_QUEUE)
#: Every queue the service declares at startup.
ALL_QUEUES = (SIGNALS_QUEUE, ORDER_UPDATES_QUEUE, ORDER_EVENTS_QUEUE)
