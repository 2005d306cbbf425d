"""Dead letters: every message a consumer could not process, with its reason; re-drive it
to its queue (after fixing the cause) or discard it. Both are recorded with who and when."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from api.deps import ReadKey, ServiceDep, SessionDep, TradeKey, api_v1_router
from api.errors import ApiError
from api.pagination import (
    DEFAULT_LIMIT,
    CursorParam,
    LimitParam,
    decode_cursor,
    keyset,
    next_cursor,
)
from api.schemas import described_errors, error_example, error_responses
from api.stored import safe_mapping
from om_core.db.models import DeadLetterRecord
from om_core.dead_letters import DeadLetterConflict, DeadLetterNotFound, DeadLetterState
from om_core.messaging.base import PublishError
from om_core.service import Service

__all__ = ["DeadLetterDetail", "DeadLetterOut", "dead_letter_out", "router"]

router = api_v1_router("dead letters")

CURSOR_KIND = "d"
#: Characters of the body a listing shows; the whole body is in ``GET /dead-letters/{id}``.
PREVIEW_CHARS = 500
_MAX_ID = 2**63 - 1

_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "queue": "model-service.trading_signals",
    "message_id": "trend-2026-01-05T10:00:00Z-BTC",
    "message_type": None,
    "correlation_id": None,
    "content_type": "application/json",
    "headers": {"x-om-error": "invalid signal: qty: not a number (got 'abc')"},
    "reason": "invalid signal: qty: not a number (got 'abc')",
    "delivery_count": 0,
    "body_preview": '{"signal_id": "trend-2026-01-05T10:00:00Z-BTC", "qty": "abc"}',
    "body_size": 61,
    "state": "pending",
    "resolved_by": None,
    "resolved_at": None,
    "dead_lettered_at": "2026-01-05T10:00:00.020Z",
}


class DeadLetterOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: int
    queue: str = Field(description="The queue it was taken from, and is re-driven to.")
    message_id: str | None
    message_type: str | None
    correlation_id: str | None
    content_type: str | None
    headers: dict[str, Any] = Field(description="The publisher's headers.")
    reason: str = Field(description="Why it was dead-lettered.")
    delivery_count: int = Field(description="Deliveries before the one that dead-lettered it.")
    body_preview: str = Field(
        description=f"The first {PREVIEW_CHARS} characters of the body (invalid UTF-8 shown "
        "as U+FFFD)."
    )
    body_size: int = Field(description="The body's length in bytes.")
    state: str = Field(description="`pending`, `redriven` or `discarded`.")
    resolved_by: str | None = Field(description="Who re-drove or discarded it (a key id).")
    resolved_at: datetime | None = Field(description="When, or `null` while pending.")
    dead_lettered_at: datetime = Field(description="When it was dead-lettered.")


class DeadLetterDetail(DeadLetterOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_EXAMPLE,
                    "body_text": _EXAMPLE["body_preview"],
                    "body_base64": base64.b64encode(_EXAMPLE["body_preview"].encode()).decode(),
                }
            ]
        }
    )

    body_text: str | None = Field(description="The whole body, or `null` if not UTF-8.")
    body_base64: str = Field(description="The whole body, exactly, in base64.")


class DeadLetterPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_EXAMPLE]}]})

    items: list[DeadLetterOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next (older) page; `null` on the last page."
    )


def dead_letter_out(row: DeadLetterRecord) -> DeadLetterOut:
    return DeadLetterOut(**_fields(row))


def _fields(row: DeadLetterRecord) -> dict[str, Any]:
    return {
        "id": row.id or 0,
        "queue": row.queue,
        "message_id": row.message_id,
        "message_type": row.message_type,
        "correlation_id": row.correlation_id,
        "content_type": row.content_type,
        "headers": safe_mapping(row.headers, max_bytes=16 * 1024).value,
        "reason": row.reason,
        "delivery_count": row.delivery_count,
        "body_preview": bytes(row.body[: PREVIEW_CHARS * 4]).decode("utf-8", "replace")[
            :PREVIEW_CHARS
        ],
        "body_size": len(row.body),
        "state": row.state,
        "resolved_by": row.resolved_by,
        "resolved_at": row.resolved_at,
        "dead_lettered_at": row.created_at,
    }


def _detail(row: DeadLetterRecord) -> DeadLetterDetail:
    try:
        text: str | None = bytes(row.body).decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return DeadLetterDetail(
        **_fields(row),
        body_text=text,
        body_base64=base64.b64encode(bytes(row.body)).decode("ascii"),
    )


#: The queues this service consumes (om_core.messaging.topology.CONSUMED_QUEUES).
QueueName = Literal["model-service.trading_signals", "ws-gateway.order"]

DeadLetterId = Annotated[int, Path(ge=1, le=_MAX_ID, description="The dead letter's id.")]

_NOT_FOUND = described_errors(
    {
        404: (
            "No such dead letter",
            {"not_found": error_example("dead_letter_not_found", "no dead letter 7")},
        )
    }
)
_CONFLICT = described_errors(
    {
        409: (
            "Acted on already (re-driven or discarded), or from a queue this service does not "
            "consume",
            {
                "dead_letter_resolved": error_example(
                    "dead_letter_resolved",
                    "dead letter 7 is already redriven (by api-key:3f2a9c1e)",
                    {"state": "redriven"},
                )
            },
        )
    }
)
_BROKER = described_errors(
    {
        503: (
            "The broker did not confirm the re-driven message; the dead letter stays pending",
            {
                "broker_unavailable": error_example(
                    "broker_unavailable", "the broker did not confirm the message"
                )
            },
        )
    }
)


@router.get(
    "/dead-letters",
    summary="Dead-lettered messages, newest first",
    description="Every message a consumer dead-lettered (malformed, or failing past the "
    "delivery limit), with its reason and time, whatever the bus. Keyset-paginated; "
    "`state` and `queue` filter.",
    responses=error_responses(400, 422),
)
async def list_dead_letters(
    _key: ReadKey,
    session: SessionDep,
    state: Annotated[
        list[DeadLetterState] | None, Query(description="Any of these states.")
    ] = None,
    queue: Annotated[QueueName | None, Query(description="The queue it came from.")] = None,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
) -> DeadLetterPage:
    position = decode_cursor(CURSOR_KIND, cursor) if cursor else None  # `cursor=`: none
    where, order_by = keyset(col(DeadLetterRecord.created_at), col(DeadLetterRecord.id), position)
    if state:
        where.append(col(DeadLetterRecord.state).in_([s.value for s in state]))
    if queue is not None:
        where.append(col(DeadLetterRecord.queue) == queue)
    query = select(DeadLetterRecord).where(*where).order_by(*order_by).limit(limit + 1)
    rows = (await session.exec(query)).all()
    page, cursor_out = next_cursor(CURSOR_KIND, rows, limit)
    return DeadLetterPage(items=[dead_letter_out(r) for r in page], next_cursor=cursor_out)


@router.get(
    "/dead-letters/{dead_letter_id}",
    summary="One dead letter, with its whole body",
    responses={**_NOT_FOUND, **error_responses(422)},
)
async def get_dead_letter(
    _key: ReadKey, session: SessionDep, dead_letter_id: DeadLetterId
) -> DeadLetterDetail:
    row = await session.get(DeadLetterRecord, dead_letter_id)
    if row is None:
        raise ApiError(404, "dead_letter_not_found", f"no dead letter {dead_letter_id}")
    return _detail(row)


async def act(service: Service, dead_letter_id: int, action: str, actor: str) -> DeadLetterOut:
    """Re-drive or discard; API errors for what went wrong (the console calls this too)."""
    try:
        if action == "redrive":
            row = await service.dead_letters.redrive(dead_letter_id, actor)
        else:
            row = await service.dead_letters.discard(dead_letter_id, actor)
    except DeadLetterNotFound:
        raise ApiError(404, "dead_letter_not_found", f"no dead letter {dead_letter_id}") from None
    except DeadLetterConflict as exc:
        raise ApiError(409, "dead_letter_resolved", str(exc), {"state": exc.state}) from None
    except PublishError as exc:
        raise ApiError(
            503, "broker_unavailable", f"the broker did not confirm the message: {exc}"
        ) from None
    return dead_letter_out(row)


@router.post(
    "/dead-letters/{dead_letter_id}/redrive",
    summary="Publish a dead letter back to its queue",
    description="The message is published unchanged (body, id, properties, the publisher's "
    "headers, plus `x-om-redriven-from`) to the queue it came from, with the broker's "
    "confirm, and the dead letter is marked `redriven` with who and when. Do it after "
    "fixing what made it fail: a message that fails again is dead-lettered again, as a new "
    "dead letter.",
    responses={
        **error_responses(403),
        **_NOT_FOUND,
        **_CONFLICT,
        **error_responses(422),
        **_BROKER,
    },
)
async def redrive_dead_letter(
    key: TradeKey, service: ServiceDep, dead_letter_id: DeadLetterId
) -> DeadLetterOut:
    return await act(service, dead_letter_id, "redrive", key.actor)


@router.post(
    "/dead-letters/{dead_letter_id}/discard",
    summary="Discard a dead letter",
    description="Marks it `discarded`, with who and when; the row (and its body) is kept.",
    responses={**error_responses(403), **_NOT_FOUND, **_CONFLICT, **error_responses(422)},
)
async def discard_dead_letter(
    key: TradeKey, service: ServiceDep, dead_letter_id: DeadLetterId
) -> DeadLetterOut:
    return await act(service, dead_letter_id, "discard", key.actor)
