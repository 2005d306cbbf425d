"""Signals: submit one (it joins the queue a model service publishes to), list recent ones
with their outcome, read one with its rejection reasons and orders."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Path, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import col, select

from api.deps import ReadKey, ServiceDep, SessionDep, TradeKey, api_v1_router
from api.errors import ApiError
from api.pagination import (
    DEFAULT_LIMIT,
    CursorParam,
    LimitParam,
    UTCTimestamp,
    decode_cursor,
    encode_cursor,
    keyset,
)
from api.routes.orders import FilterText, order_out, payload_fields, reasons_out
from api.schemas import (
    SignalItem,
    SignalOut,
    SignalPage,
    SignalReceipt,
    described_errors,
    error_example,
    error_responses,
)
from om_core.db.models import Order, SignalRecord
from om_core.db.session import AsyncSession
from om_core.messaging.base import PublishError
from om_core.service import Service
from om_core.signals.contract import InvalidSignal, MessageTooLarge
from om_core.signals.intake import SignalIdConflict, Submission
from om_core.signals.store import SignalStatus
from om_plugins.types import Side

__all__ = ["read_bounded", "receipt", "router", "signal_item", "signal_out", "submit"]

router = api_v1_router("signals")

CURSOR_KIND = "g"

_SIGNAL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {
                    "signal_id": "manual-2026-01-05-1",
                    "symbol": "BTCUSDT",
                    "side": "buy",
                    "qty": "0.001",
                },
            }
        },
    }
}

_SUBMIT_ERRORS = described_errors(
    {
        413: (
            "The body is larger than a signal can be",
            {
                "payload_too_large": error_example(
                    "payload_too_large",
                    "message is 10485760 bytes, more than the maximum of 65536 "
                    "(OM_MAX_MESSAGE_BYTES)",
                )
            },
        ),
        409: (
            "The `signal_id` is known with other content: the first copy wins, this one is "
            "refused (`SIGNAL_ID_CONFLICT`, with a `signal.rejected` event)",
            {
                "signal_id_conflict": error_example(
                    "signal_id_conflict",
                    "a signal with this signal_id and other content is known already",
                    {"signal_id": "manual-2026-01-05-1", "fields": "qty"},
                )
            },
        ),
        422: (
            "Not a valid signal: `details.problems` lists every field at fault, exactly as "
            "the queue consumer would dead-letter it",
            {
                "invalid_signal": error_example(
                    "invalid_signal",
                    "the signal is invalid",
                    {"problems": ["qty: must be greater than 0 (got -1)"]},
                )
            },
        ),
        503: (
            "The broker did not confirm the signal; nothing is known to be queued: retry "
            "with the same `signal_id`",
            {
                "broker_unavailable": error_example(
                    "broker_unavailable",
                    "the broker did not confirm the signal",
                )
            },
        ),
    }
)


def _url(signal_id: str) -> str:
    return "/api/v1/signals/" + quote(signal_id, safe="")


def signal_item(record: SignalRecord) -> SignalItem:
    return SignalItem(**_item_fields(record))


def _item_fields(record: SignalRecord) -> dict[str, Any]:
    return {
        "signal_id": record.signal_id,
        "status": record.status,
        "symbol": record.symbol,
        "side": record.side,
        "category": record.category,
        "reasons": reasons_out(record),
        **payload_fields(record),
        "signal_created_at": record.signal_created_at,
        "received_at": record.received_at,
        "updated_at": record.updated_at,
    }


async def signal_out(session: AsyncSession, record: SignalRecord) -> SignalOut:
    orders = (
        await session.exec(
            select(Order)
            .where(col(Order.signal_id) == record.signal_id)
            .order_by(col(Order.leg), col(Order.id))
        )
    ).all()
    return SignalOut(**_item_fields(record), orders=[order_out(o) for o in orders])


async def submit(service: Service, body: bytes, actor: str, *, source: str) -> Submission:
    """Validate and queue a signal; API errors for what the caller must fix or retry."""
    try:
        return await service.intake.submit(body, source=source, actor=actor)
    except MessageTooLarge as exc:
        raise ApiError(413, "payload_too_large", exc.problems[0]) from None
    except InvalidSignal as exc:
        raise ApiError(
            422, "invalid_signal", "the signal is invalid", {"problems": exc.problems}
        ) from None
    except SignalIdConflict as exc:
        raise ApiError(
            409,
            "signal_id_conflict",
            exc.reason.message,
            {"signal_id": exc.signal_id, **exc.reason.details},
        ) from None
    except PublishError as exc:
        raise ApiError(
            503, "broker_unavailable", f"the broker did not confirm the signal: {exc}"
        ) from None


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, read no further than one byte past ``limit`` (the contract then answers 413
    for it): a 10 MB body is not held whole to be refused."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413,
            "payload_too_large",
            f"message is {int(declared)} bytes, more than the maximum of {limit} "
            "(OM_MAX_MESSAGE_BYTES)",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


async def receipt(service: Service, submission: Submission) -> SignalReceipt:
    stored = None
    if submission.record is not None:
        async with service.sessions() as session:
            stored = await signal_out(session, submission.record)
    return SignalReceipt(
        signal_id=submission.signal_id,
        status=submission.status,
        duplicate=submission.duplicate,
        url=_url(submission.signal_id),
        signal=stored,
    )


@router.post(
    "/signals",
    status_code=202,
    response_model=SignalReceipt,
    summary="Submit a signal: it joins model-service.trading_signals",
    description="Validated with the queue consumer's own contract (docs/signals.md), then "
    "published to `model-service.trading_signals` on the service's bus, so it is decided by "
    "the same consumer, batching, de-duplication and plugins as a signal from a model "
    "service. 202 with the signal id and the URL to follow its outcome. Idempotent on "
    "`signal_id`: a known id is answered with the stored signal (200, `duplicate: true`) and "
    "not queued again.",
    responses={
        200: {"model": SignalReceipt, "description": "Known already: nothing was queued"},
        **error_responses(403),
        **_SUBMIT_ERRORS,
    },
    openapi_extra=_SIGNAL_BODY,
)
async def post_signal(key: TradeKey, service: ServiceDep, request: Request) -> JSONResponse:
    body = await read_bounded(request, service.intake.limits.max_bytes)
    submission = await submit(service, body, key.actor, source="api")
    out = await receipt(service, submission)
    return JSONResponse(
        status_code=200 if submission.duplicate else 202,
        content=out.model_dump(mode="json"),
        headers={"Location": out.url},
    )


@router.get(
    "/signals",
    summary="List signals with their outcome, newest first",
    description="Every signal the service stored (from the queue or this API), with every "
    "rejection reason. Keyset-paginated by the time it was received; filters combine with "
    "AND and `status` may repeat. A signal queued but not yet decided is not listed until "
    "the consumer stores it (milliseconds).",
    responses=error_responses(400, 422),
)
async def list_signals(
    _key: ReadKey,
    session: SessionDep,
    status: Annotated[
        list[SignalStatus] | None, Query(description="Any of these outcomes.")
    ] = None,
    symbol: Annotated[
        FilterText | None, Query(max_length=64, description="e.g. `BTCUSDT`.")
    ] = None,
    side: Side | None = None,
    received_from: Annotated[
        UTCTimestamp | None, Query(description="Received at or after (ISO 8601 with timezone).")
    ] = None,
    received_to: Annotated[
        UTCTimestamp | None, Query(description="Received before (ISO 8601 with timezone).")
    ] = None,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
) -> SignalPage:
    position = decode_cursor(CURSOR_KIND, cursor) if cursor else None  # `cursor=`: none
    where, order_by = keyset(col(SignalRecord.received_at), col(SignalRecord.id), position)
    if status:
        where.append(col(SignalRecord.status).in_([s.value for s in status]))
    if symbol is not None:
        where.append(col(SignalRecord.symbol) == symbol.upper())
    if side is not None:
        where.append(col(SignalRecord.side) == side.value)
    if received_from is not None:
        where.append(col(SignalRecord.received_at) >= received_from)
    if received_to is not None:
        where.append(col(SignalRecord.received_at) < received_to)
    query = select(SignalRecord).where(*where).order_by(*order_by).limit(limit + 1)
    rows = (await session.exec(query)).all()
    page, next_cursor = rows[:limit], None
    if len(rows) > limit:
        last = page[-1]
        assert last.id is not None
        next_cursor = encode_cursor(CURSOR_KIND, last.received_at, last.id)
    return SignalPage(items=[signal_item(r) for r in page], next_cursor=next_cursor)


@router.get(
    "/signals/{signal_id:path}",
    summary="A signal's outcome, rejection reasons and orders",
    responses=error_responses(404, 422),
)
async def get_signal(
    _key: ReadKey,
    session: SessionDep,
    signal_id: Annotated[
        str, Path(description="The producer's `signal_id`.", examples=["trend-2026-01-05-BTC"])
    ],
) -> SignalOut:
    record = None
    # Longer ids or NUL cannot have been stored; no need to ask the database.
    if 0 < len(signal_id) <= 128 and "\x00" not in signal_id:
        record = (
            await session.exec(select(SignalRecord).where(col(SignalRecord.signal_id) == signal_id))
        ).one_or_none()
    if record is None:
        raise ApiError(404, "signal_not_found", f"no signal {signal_id[:128]!r}")
    return await signal_out(session, record)
