"""The order state machine: which exchange report may move an order where.

Table-driven: :data:`RANK` orders the non-terminal states, and :func:`decide` says what to do
with a report (in the SDK's neutral statuses: exchange plugins translate their own).
Cumulative quantities are the truth and only grow; a report never moves an order backwards.

The one real-world exception to "terminal stays terminal": an exchange can report a fill
after it reported the cancel (the cancel raced the match; Bybit documents receiving two
``Filled`` messages in that case, and NautilusTrader allows ``cancelled → filled``). A
cancelled order whose cumulative filled quantity grows takes the fill, and becomes
``filled`` when the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from om_core.orders.status import IN_DOUBT, TERMINAL, OrderStatus

__all__ = ["RANK", "Action", "Verdict", "decide", "normalize"]

#: Progress of a live order; a report may only move an order to an equal or higher rank.
RANK: dict[OrderStatus, int] = {
    OrderStatus.PENDING_SUBMIT: 0,
    OrderStatus.SUBMIT_UNKNOWN: 0,
    OrderStatus.SUBMITTED: 1,
    OrderStatus.UNTRIGGERED: 2,
    OrderStatus.TRIGGERED: 3,
    OrderStatus.NEW: 4,
    OrderStatus.PARTIALLY_FILLED: 5,
}

_CANCELLED = frozenset({OrderStatus.CANCELLED, OrderStatus.PARTIALLY_FILLED_CANCELLED})


class Action(StrEnum):
    #: Move to ``Verdict.status`` (may equal the current one when only the fill grew).
    APPLY = "apply"
    #: Nothing new: an exact duplicate or an older report. Changes nothing, publishes nothing.
    IGNORE = "ignore"
    #: Impossible by the rules: kept aside with the payload and a reason, never applied.
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    status: OrderStatus
    reason: str = ""


def normalize(status: OrderStatus, filled: Decimal) -> OrderStatus:
    """A reported status as the engine keeps it: a cancel after fills is
    ``partially_filled_cancelled``, whichever of the two the exchange said."""
    if status is OrderStatus.CANCELLED and filled > 0:
        return OrderStatus.PARTIALLY_FILLED_CANCELLED
    return status


def decide(
    current: OrderStatus,
    current_filled: Decimal,
    current_updated_ms: int | None,
    reported: OrderStatus,
    reported_filled: Decimal,
    reported_updated_ms: int | None,
) -> Verdict:
    """What to do with a report saying ``reported`` (cumulative ``reported_filled``)."""
    grew = reported_filled > current_filled
    older = (
        current_updated_ms is not None
        and reported_updated_ms is not None
        and reported_updated_ms < current_updated_ms
    )

    if current in TERMINAL:
        if current in _CANCELLED and grew:
            # A fill reported after the cancel: take it.
            if reported is OrderStatus.FILLED:
                return Verdict(Action.APPLY, OrderStatus.FILLED, "fill reported after cancel")
            return Verdict(
                Action.APPLY, OrderStatus.PARTIALLY_FILLED_CANCELLED, "fill reported after cancel"
            )
        if reported == current and not grew:
            return Verdict(Action.IGNORE, current, "duplicate report")
        if current is OrderStatus.FILLED and reported in TERMINAL and not grew:
            # Bybit may report Filled twice, or a cancel that lost the race to the match.
            return Verdict(Action.IGNORE, current, "late report for a filled order")
        unknown_time = current_updated_ms is None or reported_updated_ms is None
        if not grew and (older or unknown_time):
            return Verdict(Action.IGNORE, current, "older report for a finished order")
        return Verdict(
            Action.QUARANTINE,
            current,
            f"a {current.value} order cannot become {reported.value}"
            + (f" with filled qty growing to {reported_filled}" if grew else ""),
        )

    if reported in TERMINAL:
        if reported is OrderStatus.CANCELLED and max(current_filled, reported_filled) > 0:
            reported = OrderStatus.PARTIALLY_FILLED_CANCELLED
        return Verdict(Action.APPLY, reported)

    # Both live: move forward only; a fill always counts, even in an older-looking report.
    if current in IN_DOUBT:
        target = reported
    elif RANK[reported] >= RANK[current] and not older:
        target = reported
    else:
        target = current
    if (
        max(current_filled, reported_filled) > 0
        and RANK[target] < RANK[OrderStatus.PARTIALLY_FILLED]
    ):
        target = OrderStatus.PARTIALLY_FILLED
    if target == current and not grew:
        return Verdict(Action.IGNORE, current, "duplicate or older report")
    return Verdict(Action.APPLY, target)
