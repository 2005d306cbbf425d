"""The trading switch: ``active``, ``reducing`` (only orders that shrink a position) or
``halted``.

It lives in the single ``trading_state`` row (id 1); no row means ``active``. The engine reads
it into every decision (``DecisionContext.trading_state``) and enforces it itself on every
path that places an order (:mod:`om_core.engine.guard`), whatever plugins are enabled.
Every change stages a ``trading_state.changed`` event in the same transaction::

    {"event_type": "trading_state.changed", "signal_id": null, "order": null, "fill": null,
     "position": null,
     "trading_state": {"state": "halted", "previous_state": "active",
                       "reason": "exchange maintenance", "actor": "api-key:3f2a9c1e",
                       "changed_at": "2026-01-05T10:00:00.123456+00:00"}}

(plus the common ``event_id``, ``schema_version``, ``occurred_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from om_core.db.models import TradingStateRow, table
from om_core.db.session import AsyncSession
from om_core.db.types import utcnow
from om_core.events.outbox import add_event
from om_core.events.payloads import EventType, new_event, trading_state_payload
from om_plugins.types import TradingState

__all__ = ["TradingStatus", "current_state", "get_state", "set_state"]

_ROW_ID = 1


@dataclass(frozen=True, slots=True)
class TradingStatus:
    state: TradingState
    reason: str
    #: ``None`` while the state was never set (the default, ``active``).
    updated_at: datetime | None
    #: Whether the last :func:`set_state` changed anything (and staged an event).
    changed: bool = False


def _status(row: TradingStateRow | None, *, changed: bool = False) -> TradingStatus:
    if row is None:
        return TradingStatus(TradingState.ACTIVE, "", None)
    return TradingStatus(TradingState(row.state), row.reason, row.updated_at, changed)


async def get_state(session: AsyncSession) -> TradingStatus:
    return _status(await session.get(TradingStateRow, _ROW_ID))


_STATE = table(TradingStateRow)
_CURRENT = sa_select(_STATE.c.state).where(_STATE.c.id == _ROW_ID)


async def current_state(conn: AsyncConnection) -> TradingState:
    """Just the state, in one Core statement built once (every batch of decisions reads it)."""
    state = (await conn.execute(_CURRENT)).scalar_one_or_none()
    return TradingState(state) if state is not None else TradingState.ACTIVE


async def _locked_row(session: AsyncSession) -> TradingStateRow | None:
    query = select(TradingStateRow).where(col(TradingStateRow.id) == _ROW_ID).with_for_update()
    return (await session.exec(query)).one_or_none()


async def set_state(
    session: AsyncSession, state: TradingState, reason: str, actor: str
) -> TradingStatus:
    """Set the state inside the caller's transaction and stage ``trading_state.changed``.

    The row is locked, so concurrent changes apply one after the other and every event's
    ``previous_state`` is the state it really replaced. Setting the same state with the same
    reason again changes nothing and emits nothing.
    """
    row = await _locked_row(session)
    if row is None:
        try:
            # A savepoint: losing the race to create the row must not abort the transaction.
            async with session.begin_nested():
                session.add(TradingStateRow(id=_ROW_ID, state=TradingState.ACTIVE, reason=""))
        except IntegrityError:
            pass
        row = await _locked_row(session)
        if row is None:  # pragma: no cover - the row was just created or found
            raise RuntimeError("the trading_state row vanished")
    previous = TradingState(row.state)
    if previous is state and row.reason == reason:
        return _status(row)
    now = utcnow()
    row.state = state.value
    row.reason = reason
    row.updated_at = now
    session.add(row)
    add_event(
        session,
        new_event(
            EventType.TRADING_STATE_CHANGED,
            signal_id=None,
            trading_state=trading_state_payload(
                state=state.value,
                previous_state=previous.value,
                reason=reason,
                actor=actor,
                changed_at=now,
            ),
        ),
    )
    await session.flush()
    return _status(row, changed=True)
