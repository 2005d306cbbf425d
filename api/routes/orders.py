"""Orders: list with filters, one order with its fills and signal, cancel."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict
from sqlmodel import col, select

from api.deps import ReadKey, ServiceDep, SessionDep, TradeKey, api_v1_router
from api.errors import ApiError
from api.pagination import (
    DEFAULT_LIMIT,
    CursorParam,
    LimitParam,
    UTCTimestamp,
    decode_cursor,
    keyset,
    next_cursor,
)
from api.schemas import (
    CancelOut,
    FillOut,
    OrderDetail,
    OrderOut,
    OrderPage,
    RejectionReason,
    SignalSummary,
    StatusChangeOut,
    error_responses,
)
from api.stored import clean_text, safe_json, safe_mapping
from om_core.db.models import Fill, Order, OrderStatusChange, SignalRecord
from om_core.db.session import AsyncSession
from om_core.events.payloads import cancel_payload, decimal_str, order_payload
from om_core.orders.cancel import OrderNotOpen
from om_core.orders.status import OrderStatus
from om_plugins.errors import ExchangeError, ExchangeRejected, ExchangeUnavailable, OutcomeUnknown
from om_plugins.types import Category, Side

__all__ = ["find_order", "order_out", "payload_fields", "reasons_out", "router"]

log = logging.getLogger("api.orders")

router = api_v1_router("orders")

CURSOR_KIND = "o"
_MAX_BIGINT = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


#: A text filter: PostgreSQL cannot compare text with NUL in it, so it is refused up front.
FilterText = Annotated[str, AfterValidator(_no_nul)]

OrderRef = Annotated[
    str,
    Path(
        description="The internal id (`42`), `client:{client_order_id}` or "
        "`exchange:{exchange_order_id}`.",
        examples=["42", "client:5b0f7d1e-7c1a-5d0e-9a51-3f6c2b8e4d10"],
    ),
]


def order_out(order: Order) -> OrderOut:
    return OrderOut.model_validate(_order_fields(order))


def _order_fields(order: Order) -> dict[str, Any]:
    return {
        **order_payload(order),
        "signal_id": order.signal_id,
        "is_external": order.is_external,
        "reject_code": order.reject_code,
        "time_in_force": order.time_in_force,
        "reduce_only": order.reduce_only,
    }


async def find_order(session: AsyncSession, ref: str) -> Order | None:
    """The order ``ref`` names, or ``None``; a malformed ref names no order."""
    if "\x00" in ref:
        return None
    for prefix, column, longest in (
        ("client:", Order.client_order_id, 36),
        ("exchange:", Order.exchange_order_id, 64),
    ):
        if ref.startswith(prefix):
            value = ref.removeprefix(prefix)
            if not value or len(value) > longest:
                return None
            query = select(Order).where(col(column) == value)
            return (await session.exec(query)).one_or_none()
    if not _DIGITS.fullmatch(ref) or int(ref) > _MAX_BIGINT:
        return None
    return await session.get(Order, int(ref))


def _not_found(ref: str) -> ApiError:
    return ApiError(404, "order_not_found", f"no order {ref[:100]}")


@router.get(
    "/orders",
    summary="List orders, newest first",
    description="Keyset-paginated: follow `next_cursor` until it is `null`. Pages stay "
    "consistent while new orders arrive. Filters combine with AND; `status` may repeat.",
    responses=error_responses(400, 422),
)
async def list_orders(
    _key: ReadKey,
    session: SessionDep,
    symbol: Annotated[
        FilterText | None, Query(max_length=64, description="e.g. `BTCUSDT`.")
    ] = None,
    status: Annotated[list[OrderStatus] | None, Query(description="Any of these statuses.")] = None,
    side: Side | None = None,
    signal_id: Annotated[FilterText | None, Query(max_length=128)] = None,
    category: Category | None = None,
    created_from: Annotated[
        UTCTimestamp | None,
        Query(description="Created at or after (ISO 8601 with timezone)."),
    ] = None,
    created_to: Annotated[
        UTCTimestamp | None,
        Query(description="Created before (ISO 8601 with timezone)."),
    ] = None,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_LIMIT,
) -> OrderPage:
    position = decode_cursor(CURSOR_KIND, cursor) if cursor else None  # `cursor=`: none
    where, order_by = keyset(col(Order.created_at), col(Order.id), position)
    if symbol is not None:
        where.append(col(Order.symbol) == symbol.upper())
    if status:
        where.append(col(Order.status).in_([s.value for s in status]))
    if side is not None:
        where.append(col(Order.side) == side.value)
    if signal_id is not None:
        where.append(col(Order.signal_id) == signal_id)
    if category is not None:
        where.append(col(Order.category) == category.value)
    if created_from is not None:
        where.append(col(Order.created_at) >= created_from)
    if created_to is not None:
        where.append(col(Order.created_at) < created_to)
    query = select(Order).where(*where).order_by(*order_by).limit(limit + 1)
    rows = (await session.exec(query)).all()
    page, cursor_out = next_cursor(CURSOR_KIND, rows, limit)
    return OrderPage(items=[order_out(o) for o in page], next_cursor=cursor_out)


@router.get(
    "/orders/{order_ref}",
    summary="One order, with its fills and its signal",
    responses=error_responses(404, 422),
)
async def get_order(_key: ReadKey, session: SessionDep, order_ref: OrderRef) -> OrderDetail:
    order = await find_order(session, order_ref)
    if order is None:
        raise _not_found(order_ref)
    fills = (
        await session.exec(
            select(Fill)
            .where(col(Fill.order_id) == order.id)
            .order_by(col(Fill.executed_at), col(Fill.id))
        )
    ).all()
    history = (
        await session.exec(
            select(OrderStatusChange)
            .where(col(OrderStatusChange.client_order_id) == order.client_order_id)
            .order_by(col(OrderStatusChange.id))
        )
    ).all()
    signal = None
    if order.signal_id is not None:
        record = (
            await session.exec(
                select(SignalRecord).where(col(SignalRecord.signal_id) == order.signal_id)
            )
        ).one_or_none()
        if record is not None:
            signal = signal_summary(record)
    return OrderDetail.model_validate(
        {
            **_order_fields(order),
            "fills": [
                FillOut(
                    exec_id=f.exec_id,
                    side=f.side,
                    qty=format(f.qty, "f"),
                    price=format(f.price, "f"),
                    fee=format(f.fee, "f"),
                    fee_currency=f.fee_currency,
                    is_maker=f.is_maker,
                    inferred=f.inferred,
                    executed_at=f.executed_at,
                )
                for f in fills
            ],
            "history": [
                StatusChangeOut(
                    status=h.status, filled_qty=decimal_str(h.filled_qty) or "0", at=h.at
                )
                for h in history
            ],
            "signal": signal,
        }
    )


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    served: str = safe_json(str(value), max_bytes=4096).value
    return served


def reasons_out(record: SignalRecord) -> list[RejectionReason]:
    """The stored rejection reasons, served defensively (see :mod:`api.stored`)."""
    stored = record.reasons if isinstance(record.reasons, list) else []
    out = []
    for reason in stored[:100]:
        if not isinstance(reason, dict):
            continue
        out.append(
            RejectionReason(
                plugin=_text_or_none(reason.get("plugin")),
                code=_text_or_none(reason.get("code")),
                message=_text_or_none(reason.get("message")),
                details=safe_mapping(reason.get("details"), max_bytes=16 * 1024).value,
            )
        )
    return out


def payload_fields(record: SignalRecord) -> dict[str, Any]:
    """``payload`` and ``payload_truncated`` of a stored signal, served defensively."""
    served = safe_mapping(record.payload)
    return {"payload": served.value, "payload_truncated": served.truncated}


def signal_summary(record: SignalRecord) -> SignalSummary:
    return SignalSummary(
        signal_id=clean_text(record.signal_id),
        status=record.status,
        reasons=reasons_out(record),
        **payload_fields(record),
    )


class OrderPreview(BaseModel):
    """What a signal would send, after risk, order type, quantity and rounding; not sent."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "signal_id": "preview-1",
                    "would_send": {
                        "client_order_id": "5811d07e-fc1a-5458-a5fa-df0d591c144f",
                        "symbol": "BTCUSDT",
                        "category": "linear",
                        "side": "buy",
                        "order_type": "limit",
                        "qty": "0.01",
                        "price": "59000",
                    },
                    "rejections": [],
                }
            ]
        }
    )

    signal_id: str | None
    would_send: dict[str, Any] | None
    rejections: list[RejectionReason]


_SIGNAL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {
                    "signal_id": "preview-1",
                    "symbol": "BTCUSDT",
                    "side": "buy",
                    "qty": "0.01",
                    "price": "59000",
                },
            }
        },
    }
}


@router.post(
    "/orders/preview",
    summary="The exact exchange request a signal would produce, not sent",
    description="Runs the signal through validation, the risk checks, order type and quantity "
    "selection and rounding against the live exchange rules and current state, and returns "
    "the request it would send, or every reason it would be rejected. Nothing is sent and "
    "nothing is recorded. The body is a signal (see docs/signals.md); numbers are read "
    "exactly, never through a float.",
    responses=error_responses(400, 403, 422, 503),
    openapi_extra=_SIGNAL_BODY,
)
async def preview_order(_key: TradeKey, service: ServiceDep, request: Request) -> OrderPreview:
    from om_core.tools.preview import preview

    body = await request.body()
    try:
        result = await preview(service, body)
    except (ExchangeUnavailable, OutcomeUnknown) as exc:
        raise ApiError(503, "exchange_unavailable", str(exc)) from exc
    return OrderPreview.model_validate(result)


@router.post(
    "/orders/{order_ref}/cancel",
    status_code=202,
    summary="Ask the exchange to cancel an open order",
    description="Records a cancel request (who asked, when; event `order.cancel_requested`), "
    "asks the exchange and records its answer (`order.cancel_accepted` or "
    "`order.cancel_failed`). Answers 202 once the exchange accepted, with the order as stored "
    "now and the request; its new status (`cancelled`, or `filled` if it filled first) "
    "arrives through the exchange's order stream and the `order.cancelled` event. Idempotent: "
    "while a request for the order is pending or accepted, another cancel returns it "
    "(`duplicate`: true) without asking the exchange again. A final order is 409 "
    "`order_not_open`; an exchange refusal 409 `exchange_rejected` with its neutral "
    "`reject_code` and its own `exchange_code`.",
    responses=error_responses(403, 404, 409, 422, 502, 503),
)
async def cancel_order(key: TradeKey, service: ServiceDep, order_ref: OrderRef) -> CancelOut:
    async with service.sessions() as session:
        order = await find_order(session, order_ref)
    if order is None or order.id is None:
        raise _not_found(order_ref)
    try:
        outcome = await service.cancels.cancel(order.id, key.actor)
    except LookupError:
        raise _not_found(order_ref) from None
    except OrderNotOpen as exc:
        details: dict[str, Any] = {"status": exc.order.status}
        if exc.last is not None:
            details["cancel_request_id"] = exc.last.id
        raise ApiError(409, "order_not_open", f"{exc}", details) from None
    request = outcome.request
    error = outcome.error
    details = {"exchange_code": request.exchange_code or "", "cancel_request_id": request.id}
    if isinstance(error, ExchangeRejected):
        raise ApiError(
            409,
            "exchange_rejected",
            request.message or str(error),
            {**details, "reject_code": request.reject_code},
        ) from None
    if isinstance(error, ExchangeUnavailable):
        headers = None
        if error.retry_after is not None:
            headers = {"Retry-After": str(max(int(error.retry_after + 0.999), 1))}
        raise ApiError(
            503,
            "exchange_unavailable",
            f"the exchange could not be reached: {request.message or error}",
            details,
            headers=headers,
        ) from None
    if isinstance(error, ExchangeError) and not isinstance(error, OutcomeUnknown):
        log.warning("cancel of order %s failed: %s", order.id, error)
        raise ApiError(502, "exchange_error", request.message or str(error), details) from None
    if error is not None:
        raise ApiError(
            503,
            "exchange_outcome_unknown",
            "the exchange's answer was lost; the order may or may not be cancelled: "
            f"check it before retrying ({request.message or error})",
            details,
        ) from None
    return CancelOut.model_validate(
        {
            **_order_fields(outcome.order),
            "cancel_request": cancel_payload(request),
            "duplicate": outcome.duplicate,
        }
    )
