"""Record every change of an order's status or filled quantity, whichever code made it.

A ``before_flush`` listener on the ORM session looks at new and changed :class:`Order` rows
and adds an :class:`OrderStatusChange` in the same transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from om_core.db.models import Order, OrderStatusChange
from om_core.db.types import utcnow

__all__ = ["install"]


def _changed(order: Order) -> bool:
    state = inspect(order)
    return any(state.attrs[name].history.has_changes() for name in ("status", "filled_qty"))


def _record(session: Session, _context: Any, _instances: Any) -> None:
    now = utcnow()
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, Order) and (obj in session.new or _changed(obj)):
            session.add(
                OrderStatusChange(
                    client_order_id=obj.client_order_id,
                    status=obj.status,
                    filled_qty=obj.filled_qty,
                    at=now,
                )
            )


def install() -> None:
    """Idempotent: every ORM session in the process records order history."""
    if not event.contains(Session, "before_flush", _record):
        event.listen(Session, "before_flush", _record)
