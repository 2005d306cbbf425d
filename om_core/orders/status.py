"""Our order statuses and how Bybit's ``orderStatus`` maps onto them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["IN_DOUBT", "OPEN", "TERMINAL", "OrderStatus"]


class OrderStatus(StrEnum):
    #: Intent committed, exchange call not answered yet (or the process died meanwhile).
    PENDING_SUBMIT = "pending_submit"
    #: The exchange call had an ambiguous outcome; resolved by looking the order up.
    SUBMIT_UNKNOWN = "submit_unknown"
    #: The exchange accepted the request; its order stream has not confirmed it yet.
    SUBMITTED = "submitted"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    UNTRIGGERED = "untriggered"
    TRIGGERED = "triggered"
    FILLED = "filled"
    CANCELLED = "cancelled"
    #: Cancelled after a partial fill (Bybit ``PartiallyFilledCanceled``).
    PARTIALLY_FILLED_CANCELLED = "partially_filled_cancelled"
    REJECTED = "rejected"
    DEACTIVATED = "deactivated"


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
