"""Order statuses (the SDK's neutral :class:`~om_plugins.types.OrderStatus`) and their groups."""

from __future__ import annotations

from om_plugins.types import OrderStatus

__all__ = ["IN_DOUBT", "OPEN", "TERMINAL", "OrderStatus"]

IN_DOUBT = frozenset({OrderStatus.PENDING_SUBMIT, OrderStatus.SUBMIT_UNKNOWN})
TERMINAL = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.PARTIALLY_FILLED_CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.DEACTIVATED,
    }
)
#: Orders that may still trade: they count against open-order and exposure limits.
OPEN = frozenset(OrderStatus) - TERMINAL
