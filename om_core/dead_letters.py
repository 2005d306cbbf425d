"""Dead letters the operator can see and act on: every message a bus dead-lettered, kept in
the ``dead_letters`` table as it is dead-lettered, on either bus.

The broker's ``<queue>.dlq`` keeps its own copy (tooling that reads it goes on working); the
table is what the console and ``/api/v1/dead-letters`` list. An operator **re-drives** a
message (publishes it, unchanged, back to the queue it came from, typically after fixing what
made it fail) or **discards** it; either is recorded with who (an API key's fingerprint) and
when, and a message is acted on once: the row is claimed with a conditional ``UPDATE`` in the
transaction that commits only after the broker confirmed the re-driven copy.

A message the broker dead-letters on its own (a quorum queue's delivery limit, reached only
when consumers crash before they can settle it) never passes through the bus, so it is only
in ``<queue>.dlq``; the console shows that queue's depth next to the table's pending count.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm.attributes import set_committed_value

from om_core.db.models import DeadLetterRecord, table
from om_core.db.session import AsyncSession, SessionFactory
from om_core.db.types import utcnow
from om_core.messaging.base import (
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    DeadLettered,
    MessageBus,
)
from om_core.messaging.topology import CONSUMED_QUEUES

__all__ = [
    "REDRIVEN_FROM_HEADER",
    "DeadLetterConflict",
    "DeadLetterNotFound",
    "DeadLetterState",
    "DeadLetterStore",
    "json_headers",
]

log = logging.getLogger(__name__)

DEAD_LETTERS = table(DeadLetterRecord)
#: Header on a re-driven copy: the id of the dead letter it came from.
REDRIVEN_FROM_HEADER = "x-om-redriven-from"
#: Headers the bus adds when it dead-letters; a re-driven copy goes without them.
_BUS_HEADERS = frozenset({ERROR_HEADER, ORIGINAL_QUEUE_HEADER, REDRIVEN_FROM_HEADER})


class DeadLetterState(StrEnum):
    PENDING = "pending"
    REDRIVEN = "redriven"
    DISCARDED = "discarded"


class DeadLetterNotFound(LookupError):
    """No dead letter has this id."""


class DeadLetterConflict(Exception):
    """The dead letter was already re-driven or discarded (``state`` says which), or its
    queue is not one this service consumes."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal | datetime):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return str(value)


def json_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """AMQP header values as JSON (bytes as text, or ``base64:`` when not UTF-8)."""
    value: dict[str, Any] = _json_value(headers)
    # A float that is NaN would make the JSON column unreadable elsewhere.
    json.dumps(value, allow_nan=False, default=str)
    return value


class DeadLetterStore:
    """Records dead letters (the buses' sink) and carries out the operator's decisions."""

    def __init__(
        self,
        sessions: SessionFactory,
        bus: MessageBus,
        *,
        on_recorded: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._on_recorded = on_recorded

    async def record(self, item: DeadLettered) -> None:
        """Keep one dead-lettered message (``MessageBus.dead_letter_sink``)."""
        message = item.message
        try:
            headers = json_headers(message.headers)
        except ValueError:
            headers = {k: str(v) for k, v in message.headers.items()}
        values = {
            "queue": item.queue,
            "message_id": message.message_id,
            "message_type": message.type,
            "correlation_id": message.correlation_id,
            "content_type": message.content_type,
            "headers": headers,
            "body": bytes(message.body),
            "reason": item.reason,
            "delivery_count": message.delivery_count,
            "state": DeadLetterState.PENDING.value,
            "created_at": item.at,
        }
        async with self._sessions() as session, session.begin():
            conn = await session.connection()
            result = await conn.execute(insert(DEAD_LETTERS).returning(DEAD_LETTERS.c.id), values)
            row_id = int(result.scalar_one())
        if self._on_recorded is not None:
            self._on_recorded({"id": row_id, **values})

    async def redrive(self, dead_letter_id: int, actor: str) -> DeadLetterRecord:
        """Publish the message back to its queue (with confirm) and mark it re-driven."""
        async with self._sessions() as session, session.begin():
            row = await session.get(DeadLetterRecord, dead_letter_id)
            if row is None:
                raise DeadLetterNotFound(f"no dead letter {dead_letter_id}")
            if row.queue not in CONSUMED_QUEUES:
                raise DeadLetterConflict(
                    f"dead letter {dead_letter_id} came from {row.queue!r}, a queue this "
                    "service does not consume; it cannot be re-driven",
                    row.state,
                )
            await self._claim(session, row, DeadLetterState.REDRIVEN, actor)
            headers = {k: v for k, v in row.headers.items() if k not in _BUS_HEADERS}
            headers[REDRIVEN_FROM_HEADER] = str(row.id)
            # Inside the transaction: when the broker does not confirm, the claim is rolled
            # back and the dead letter stays pending.
            await self._bus.publish(
                row.queue,
                row.body,
                message_id=row.message_id,
                type=row.message_type,
                correlation_id=row.correlation_id,
                headers=headers,
                content_type=row.content_type or "application/json",
            )
        log.warning(
            "dead letter %s (message %s) re-driven to %s by %s",
            row.id,
            row.message_id,
            row.queue,
            actor,
        )
        return row

    async def discard(self, dead_letter_id: int, actor: str) -> DeadLetterRecord:
        async with self._sessions() as session, session.begin():
            row = await session.get(DeadLetterRecord, dead_letter_id)
            if row is None:
                raise DeadLetterNotFound(f"no dead letter {dead_letter_id}")
            await self._claim(session, row, DeadLetterState.DISCARDED, actor)
        log.warning(
            "dead letter %s (message %s from %s) discarded by %s",
            row.id,
            row.message_id,
            row.queue,
            actor,
        )
        return row

    async def _claim(
        self, session: AsyncSession, row: DeadLetterRecord, state: DeadLetterState, actor: str
    ) -> None:
        """Move a pending row to ``state``; a row someone else acted on first is a conflict."""
        now = utcnow()
        result = await session.exec(
            update(DEAD_LETTERS)
            .where(
                DEAD_LETTERS.c.id == row.id,
                DEAD_LETTERS.c.state == DeadLetterState.PENDING.value,
            )
            .values(state=state.value, resolved_by=actor[:64], resolved_at=now)
        )
        if int(getattr(result, "rowcount", 0) or 0) != 1:
            await session.refresh(row)
            raise DeadLetterConflict(
                f"dead letter {row.id} is already {row.state}"
                + (f" (by {row.resolved_by})" if row.resolved_by else ""),
                row.state,
            )
        # What the UPDATE wrote, without the ORM writing it again at commit.
        set_committed_value(row, "state", state.value)
        set_committed_value(row, "resolved_by", actor[:64])
        set_committed_value(row, "resolved_at", now)
