"""Events on ``order-manager.order_events``: their shape, the outbox, the relay."""
