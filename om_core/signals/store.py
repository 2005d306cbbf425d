"""The ``signals`` table: one row per signal id, holding its single outcome."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from om_core.db.models import SignalRecord, table
from om_core.db.session import AsyncSession
from om_core.db.types import utcnow
from om_core.db.upsert import insert_unless_exists
from om_core.events.outbox import insert_events
from om_core.events.payloads import EventType, dumps, new_event, reasons_payload
from om_plugins.types import Rejection, Signal

__all__ = [
    "SignalStatus",
    "conflict_reason",
    "get_or_create",
    "insert_new",
    "json_safe",
    "record_dead_letter",
    "reject",
    "stage_rejections",
]

SIGNALS = table(SignalRecord)


class SignalStatus(StrEnum):
    PROCESSING = "processing"
    PLACED = "placed"
    REJECTED = "rejected"
    DEAD_LETTERED = "dead_lettered"


#: Outcomes after which a redelivered or republished signal changes nothing.
FINAL = frozenset({SignalStatus.PLACED, SignalStatus.REJECTED})


def json_safe(data: Any) -> Any:
    """Decimals become strings, so the stored payload is plain JSON."""
    return json.loads(dumps(data))


async def get_or_create(
    session: AsyncSession, signal: Signal, payload: Mapping[str, Any], received_at: datetime
) -> tuple[SignalRecord, bool]:
    """The signal's row, locked for this transaction; ``True`` when it was created now."""
    row = (
        await session.exec(
            select(SignalRecord)
            .where(col(SignalRecord.signal_id) == signal.signal_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is not None:
        if row.status == SignalStatus.DEAD_LETTERED:
            # An earlier malformed message carried this id; this one is valid: start over.
            _fill(row, signal, payload)
            row.status = SignalStatus.PROCESSING
            row.reasons = []
            row.updated_at = utcnow()
        return row, False
    row = SignalRecord(signal_id=signal.signal_id, status=SignalStatus.PROCESSING)
    _fill(row, signal, payload)
    row.received_at = received_at
    session.add(row)
    await session.flush()
    return row, True


async def insert_new(
    conn: AsyncConnection, signals: Sequence[tuple[Signal, Mapping[str, Any], datetime]]
) -> dict[str, int]:
    """Insert a row for each ``(signal, payload, received_at)`` whose id is new, in one
    statement: signal id → row id of those inserted now.

    Rows that existed are left alone (read them with :func:`get_or_create`, in the same
    transaction).
    """
    if not signals:
        return {}
    now = utcnow()
    result = await conn.execute(
        insert_unless_exists(conn, SIGNALS, "signal_id").returning(
            SIGNALS.c.id, SIGNALS.c.signal_id
        ),
        [
            {
                "signal_id": signal.signal_id,
                "symbol": signal.symbol,
                "side": signal.side.value,
                "category": signal.category.value,
                "status": SignalStatus.PROCESSING.value,
                "reasons": [],
                "payload": json_safe(payload),
                "signal_created_at": signal.created_at,
                "received_at": received_at,
                "updated_at": now,
            }
            for signal, payload, received_at in signals
        ],
    )
    return {signal_id: int(row_id) for row_id, signal_id in result.all()}


async def reject(
    conn: AsyncConnection, rejections: Sequence[tuple[int, str, Sequence[Rejection]]]
) -> list[list[dict[str, Any]]]:
    """Mark signals rejected with every reason and stage their ``signal.rejected`` events:
    ``(row id, signal id, reasons)`` each; returns the stored reasons of each."""
    if not rejections:
        return []
    now = utcnow()
    stored = [reasons_payload(reasons) for _, _, reasons in rejections]
    await conn.execute(
        update(SIGNALS)
        .where(SIGNALS.c.id == bindparam("b_id"))
        .values(status=SignalStatus.REJECTED.value, reasons=bindparam("b_reasons"), updated_at=now),
        [
            {"b_id": row_id, "b_reasons": r}
            for (row_id, _, _), r in zip(rejections, stored, strict=True)
        ],
    )
    await insert_events(
        conn,
        *(
            new_event(EventType.SIGNAL_REJECTED, signal_id=signal_id, reasons=r)
            for (_, signal_id, _), r in zip(rejections, stored, strict=True)
        ),
    )
    return stored


def conflict_reason(stored: Any, payload: Mapping[str, Any] | None) -> Rejection | None:
    """``SIGNAL_ID_CONFLICT`` when a copy's ``payload`` differs from the ``stored`` one (as
    stored: :func:`json_safe`), else None. ``payload`` None: it differs, in fields unknown."""
    sent = None if payload is None else json_safe(payload)
    if sent is not None and sent == stored:
        return None
    before = stored if isinstance(stored, Mapping) else {}
    fields = (
        ", ".join(sorted(str(k) for k in set(before) | set(sent) if before.get(k) != sent.get(k)))
        if sent is not None
        else "?"
    )
    return Rejection(
        code="SIGNAL_ID_CONFLICT",
        message=(
            "a signal with this signal_id and other content is known already; the first "
            "copy stored wins and this one is not executed"
        ),
        details={"fields": fields[:200]},
        plugin="engine",
    )


async def stage_rejections(
    conn: AsyncConnection, rejections: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]
) -> None:
    """Stage a ``signal.rejected`` event for each ``(signal id, stored reasons)`` without
    touching its row: a copy refused while the stored signal keeps its own outcome (e.g.
    ``SIGNAL_ID_CONFLICT``)."""
    if rejections:
        await insert_events(
            conn,
            *(
                new_event(
                    EventType.SIGNAL_REJECTED,
                    signal_id=signal_id,
                    reasons=[dict(r) for r in reasons],
                )
                for signal_id, reasons in rejections
            ),
        )


def _fill(row: SignalRecord, signal: Signal, payload: Mapping[str, Any]) -> None:
    row.symbol = signal.symbol
    row.side = signal.side.value
    row.category = signal.category.value
    row.payload = json_safe(payload)
    row.signal_created_at = signal.created_at


async def record_dead_letter(
    session: AsyncSession,
    signal_id: str,
    problems: list[str],
    payload: Any,
    *,
    code: str = "INVALID_SIGNAL",
) -> None:
    """Remember a malformed message whose id could be read; never overwrite an outcome."""
    row = (
        await session.exec(select(SignalRecord).where(col(SignalRecord.signal_id) == signal_id))
    ).one_or_none()
    reasons = [{"plugin": "engine", "code": code, "message": p} for p in problems]
    if row is None:
        session.add(
            SignalRecord(
                signal_id=signal_id,
                status=SignalStatus.DEAD_LETTERED,
                reasons=reasons,
                payload=json_safe(payload) if isinstance(payload, Mapping) else {},
            )
        )
    elif row.status == SignalStatus.DEAD_LETTERED:
        row.reasons = reasons
        row.updated_at = utcnow()
