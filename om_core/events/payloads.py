"""Build the enriched events described in ``docs/events.md`` (schema version 2).

Decimals are rendered as strings so no consumer ever parses money as a float.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from om_core.db.models import CancelRequest, Order, Position
from om_core.db.types import strip_zeros, utcnow
from om_plugins.types import Rejection

__all__ = [
    "CANCEL_EVENTS",
    "SCHEMA_VERSION",
    "EventType",
    "cancel_payload",
    "decimal_str",
    "dumps",
    "new_event",
    "order_payload",
    "position_payload",
    "reasons_payload",
    "trading_state_payload",
]

SCHEMA_VERSION = 2


class EventType(StrEnum):
    ORDER_CREATED = "order.created"
    ORDER_PARTIALLY_FILLED = "order.partially_filled"
    ORDER_FILLED = "order.filled"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_REJECTED = "order.rejected"
    ORDER_CANCEL_REQUESTED = "order.cancel_requested"
    ORDER_CANCEL_ACCEPTED = "order.cancel_accepted"
    ORDER_CANCEL_FAILED = "order.cancel_failed"
    POSITION_CORRECTED = "position.corrected"
    SIGNAL_REJECTED = "signal.rejected"
    TRADING_STATE_CHANGED = "trading_state.changed"


#: Events about a cancel request, each with its ``cancel`` object.
CANCEL_EVENTS = frozenset(
    {
        EventType.ORDER_CANCEL_REQUESTED,
        EventType.ORDER_CANCEL_ACCEPTED,
        EventType.ORDER_CANCEL_FAILED,
    }
)


def decimal_str(value: Decimal | None) -> str | None:
    """Plain notation, no trailing zeros: the same number always reads the same."""
    return None if value is None else format(strip_zeros(value), "f")


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def order_payload(order: Order | Mapping[str, Any]) -> dict[str, Any]:
    """The ``order`` object of an event, from the ORM row or a Core row's mapping."""
    get: Callable[[str], Any] = (
        order.__getitem__ if isinstance(order, Mapping) else lambda name: getattr(order, name)
    )
    return {
        "id": get("id"),
        "client_order_id": get("client_order_id"),
        "exchange_order_id": get("exchange_order_id"),
        "symbol": get("symbol"),
        "category": get("category"),
        "side": get("side"),
        "order_type": get("order_type"),
        "qty": decimal_str(get("qty")),
        "qty_unit": get("qty_unit") or "base",
        "price": decimal_str(get("price")),
        "status": get("status"),
        "filled_qty": decimal_str(get("filled_qty")),
        "avg_fill_price": decimal_str(get("avg_fill_price")),
        "cum_fee": decimal_str(get("cum_fee")),
        "fees": dict(get("fees") or {}),
        "reject_code": get("reject_code"),
        "reject_reason": get("reject_reason"),
        "exchange_code": get("exchange_code"),
        "exchange_message": get("exchange_message"),
        "created_at": _ts(get("created_at")),
        "updated_at": _ts(get("updated_at")),
    }


def position_payload(position: Position) -> dict[str, Any]:
    return {
        "symbol": position.symbol,
        "category": position.category,
        "position_idx": position.position_idx,
        "size": decimal_str(position.size),
        "avg_entry_price": decimal_str(position.avg_entry_price),
        "realized_pnl": decimal_str(position.realized_pnl),
        "fees_paid": decimal_str(position.fees_paid),
        "fees": dict(position.fees or {}),
        "updated_at": _ts(position.updated_at),
    }


def trading_state_payload(
    *,
    state: str,
    previous_state: str,
    reason: str,
    actor: str,
    changed_at: datetime,
) -> dict[str, Any]:
    """The ``trading_state`` object of a ``trading_state.changed`` event.

    ``actor`` names who changed it (``api-key:<fingerprint>``, ``engine``…), never a secret.
    """
    return {
        "state": state,
        "previous_state": previous_state,
        "reason": reason,
        "actor": actor,
        "changed_at": _ts(changed_at),
    }


def cancel_payload(request: CancelRequest) -> dict[str, Any]:
    """The ``cancel`` object of the ``order.cancel_*`` events."""
    return {
        "id": request.id,
        "state": request.state,
        "requested_by": request.requested_by,
        "requested_at": _ts(request.requested_at),
        "completed_at": _ts(request.completed_at),
        "reject_code": request.reject_code,
        "exchange_code": request.exchange_code,
        "message": request.message,
    }


def reasons_payload(reasons: Iterable[Rejection]) -> list[dict[str, Any]]:
    return [
        {"plugin": r.plugin, "code": r.code, "message": r.message, "details": dict(r.details)}
        for r in reasons
    ]


def new_event(
    event_type: EventType,
    *,
    signal_id: str | None,
    order: Mapping[str, Any] | None = None,
    fill: Mapping[str, Any] | None = None,
    position: Mapping[str, Any] | None = None,
    reasons: list[dict[str, Any]] | None = None,
    trading_state: Mapping[str, Any] | None = None,
    correction: Mapping[str, Any] | None = None,
    cancel: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type.value,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": utcnow().isoformat(),
        "signal_id": signal_id,
        "order": dict(order) if order is not None else None,
        "fill": dict(fill) if fill is not None else None,
        "position": dict(position) if position is not None else None,
    }
    if event_type is EventType.SIGNAL_REJECTED:
        event["reasons"] = reasons or []
    if event_type is EventType.TRADING_STATE_CHANGED:
        event["trading_state"] = dict(trading_state or {})
    if event_type is EventType.POSITION_CORRECTED:
        event["correction"] = dict(correction or {})
    if event_type in CANCEL_EVENTS:
        event["cancel"] = dict(cancel or {})
    return event


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False)
