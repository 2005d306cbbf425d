"""Request and response bodies of the operator API, with the examples OpenAPI shows.

Money and quantities are decimal strings (``"0.010"``), never JSON numbers, so no client
parses them through a float. Times are ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from om_plugins.types import TradingState

__all__ = [
    "DecimalStr",
    "ErrorResponse",
    "FillOut",
    "OrderDetail",
    "OrderOut",
    "OrderPage",
    "PositionList",
    "PositionOut",
    "RejectionReason",
    "SignalItem",
    "SignalOut",
    "SignalPage",
    "SignalReceipt",
    "SignalSummary",
    "SnapshotOut",
    "SnapshotPage",
    "TradingStateOut",
    "TradingStateUpdate",
    "described_errors",
    "error_example",
    "error_responses",
]

DecimalStr = Annotated[
    str,
    Field(
        pattern=r"^-?[0-9]+(\.[0-9]+)?$",
        description="A decimal number as a string, exact (never a float).",
    ),
]

_NEXT_CURSOR = Field(
    description=(
        "Pass as `cursor` to get the next (older) page; `null` on the last page. Opaque: "
        "build no meaning on its content."
    ),
)

# -- errors ------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str = Field(description="What went wrong, for a human.")
    details: Any = Field(
        default=None,
        description="More about the error: for `validation_error`, one `{field, message}` "
        "per problem; for exchange errors, the exchange's code.",
    )


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer has this shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "order_not_found",
                        "message": "no order 42",
                        "details": None,
                    }
                }
            ]
        }
    )

    error: ErrorDetail


def _example(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"value": {"error": {"code": code, "message": message, "details": details}}}


_ERROR_EXAMPLES: dict[int, tuple[str, dict[str, dict[str, Any]]]] = {
    400: (
        "Bad request: a cursor this API did not produce, or a body that is not UTF-8 JSON",
        {
            "invalid_cursor": _example(
                "invalid_cursor", "the cursor is not valid; start again without one"
            ),
            "bad_request": _example("bad_request", "There was an error parsing the body"),
        },
    ),
    401: (
        "No API key, or an unknown one",
        {
            "missing_api_key": _example(
                "missing_api_key", "this route needs an API key in the X-API-Key header"
            ),
            "invalid_api_key": _example("invalid_api_key", "the API key is not valid"),
        },
    ),
    403: (
        "The key's scope does not allow this route",
        {
            "insufficient_scope": _example(
                "insufficient_scope",
                "this route changes state and needs a key with the trade scope",
                {"required_scope": "trade", "key_scope": "read"},
            )
        },
    ),
    404: (
        "Not found",
        {"not_found": _example("order_not_found", "no order client:3f1c…")},
    ),
    409: (
        "Conflicts with the order's state, or refused by the exchange",
        {
            "order_not_open": _example(
                "order_not_open", "order 42 is filled: it cannot be cancelled", {"status": "filled"}
            ),
            "exchange_rejected": _example(
                "exchange_rejected",
                "order not exists or too late to cancel",
                {"exchange_code": "110001"},
            ),
        },
    ),
    422: (
        "The request is invalid; `details` names each field",
        {
            "validation_error": _example(
                "validation_error",
                "the request is invalid",
                [{"field": "query.created_from", "message": "Input should have timezone info"}],
            )
        },
    ),
    502: (
        "The exchange answered with an unexpected error",
        {"exchange_error": _example("exchange_error", "exchange error", {"exchange_code": ""})},
    ),
    503: (
        "The exchange could not be reached, or its answer was lost; nothing is known to "
        "have changed: check the order and retry",
        {
            "exchange_unavailable": _example(
                "exchange_unavailable", "exchange unreachable", {"exchange_code": ""}
            )
        },
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, with the error model."""
    return described_errors({status: _ERROR_EXAMPLES[status] for status in statuses})


def error_example(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """One named example of an error body, for :func:`described_errors`."""
    return _example(code, message, details)


def described_errors(
    entries: dict[int, tuple[str, dict[str, dict[str, Any]]]],
) -> dict[int | str, dict[str, Any]]:
    """``responses`` entries for errors a route describes itself: status → (description,
    examples by name)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, (description, examples) in entries.items():
        out[status] = {
            "model": ErrorResponse,
            "description": description,
            "content": {"application/json": {"examples": examples}},
        }
    return out


# -- orders ------------------------------------------------------------------------------------

_ORDER_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "client_order_id": "5b0f7d1e-7c1a-5d0e-9a51-3f6c2b8e4d10",
    "exchange_order_id": "1c1f9b3a-8d2e-4a77-b6f1-0e5d3c2a1b90",
    "signal_id": "trend-2026-01-05T10:00:00Z-BTC",
    "symbol": "BTCUSDT",
    "category": "linear",
    "side": "buy",
    "order_type": "limit",
    "time_in_force": "GTC",
    "reduce_only": False,
    "qty": "0.010",
    "qty_unit": "base",
    "price": "59000.0",
    "status": "new",
    "filled_qty": "0",
    "avg_fill_price": None,
    "cum_fee": "0",
    "fees": {},
    "reject_code": None,
    "reject_reason": None,
    "exchange_code": None,
    "exchange_message": None,
    "is_external": False,
    "created_at": "2026-01-05T10:00:00.123456Z",
    "updated_at": "2026-01-05T10:00:00.456789Z",
}


class OrderOut(BaseModel):
    """An order: the event ``order`` object plus its signal, origin and rejection code."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ORDER_EXAMPLE]})

    id: int
    client_order_id: str = Field(description="Our id, sent to the exchange (`orderLinkId`).")
    exchange_order_id: str | None = Field(description="The exchange's id, once it has one.")
    signal_id: str | None = Field(description="The signal that caused it; `null` if external.")
    symbol: str
    category: str = Field(description="`linear`, `spot` or `inverse`.")
    side: str = Field(description="`buy` or `sell`.")
    order_type: str = Field(description="`market` or `limit`.")
    time_in_force: str | None
    reduce_only: bool
    qty: DecimalStr
    qty_unit: str = Field(
        description="What `qty` counts: `base` coin, `contracts` (inverse), or `quote` (a spot "
        "market buy placed elsewhere by amount to spend). Filled quantities count base coin "
        "or contracts."
    )
    price: DecimalStr | None
    status: str = Field(
        description="`pending_submit`, `submit_unknown`, `submitted`, `new`, "
        "`partially_filled`, `untriggered`, `triggered`, `filled`, `cancelled`, "
        "`partially_filled_cancelled`, `rejected` or `deactivated`."
    )
    filled_qty: DecimalStr
    avg_fill_price: DecimalStr | None
    cum_fee: DecimalStr = Field(
        description="Fees in the instrument's PnL coin (other coins converted at their fill "
        "price); negative = rebates."
    )
    fees: dict[str, DecimalStr] = Field(description="Fees per currency, as paid.")
    reject_code: str | None = Field(
        description="Why it was rejected or cancelled, in neutral words: "
        "`INSUFFICIENT_BALANCE`, `POST_ONLY_WOULD_TAKE`, `CANCELLED_BY_USER`…, or the engine's "
        "own (`SIGNAL_STALE`)."
    )
    reject_reason: str | None
    exchange_code: str | None = Field(description="The exchange's own code (`110007`).")
    exchange_message: str | None = Field(description="The exchange's own text.")
    is_external: bool = Field(description="Placed outside this service (by hand, another bot).")
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_ORDER_EXAMPLE], "next_cursor": "by4xNzY3NjA3MjAwMTIzNDU2LjQy"}]
        }
    )

    items: list[OrderOut] = Field(description="Newest first.")
    next_cursor: str | None = _NEXT_CURSOR


class FillOut(BaseModel):
    exec_id: str = Field(
        description="The exchange's execution id; `inferred:<order id>` for what order "
        "reports say filled before its executions arrived (replaced as they do)."
    )
    side: str
    qty: DecimalStr
    price: DecimalStr
    fee: DecimalStr = Field(description="In `fee_currency`; negative = a rebate.")
    fee_currency: str
    is_maker: bool | None
    inferred: bool
    executed_at: datetime


class RejectionReason(BaseModel):
    plugin: str | None = Field(description="Who refused: a plugin name, `engine`, `exchange`.")
    code: str | None = Field(description="e.g. `TRADING_HALTED`, or an exchange `retCode`.")
    message: str | None
    details: dict[str, Any] = Field(default_factory=dict)


class SignalSummary(BaseModel):
    signal_id: str
    status: str = Field(description="`processing`, `placed`, `rejected` or `dead_lettered`.")
    reasons: list[RejectionReason] = Field(description="Every reason, when rejected.")
    payload: dict[str, Any] = Field(description="The signal as received (numbers as strings).")
    payload_truncated: bool = Field(
        default=False,
        description="`payload` was cut to be served (nested too deep, too large) or had text "
        "that is not valid Unicode replaced; the stored signal is unchanged.",
    )


class StatusChangeOut(BaseModel):
    status: str = Field(examples=["partially_filled"])
    filled_qty: str = Field(examples=["0.004"])
    at: datetime


_CANCEL_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "state": "accepted",
    "requested_by": "api-key:3f2a9c1e",
    "requested_at": "2026-01-05T10:05:00.123456Z",
    "completed_at": "2026-01-05T10:05:00.181234Z",
    "reject_code": None,
    "exchange_code": None,
    "message": None,
}


class CancelRequestOut(BaseModel):
    """A recorded cancel request and what the exchange answered."""

    id: int
    state: str = Field(
        description="`pending` (the exchange is being asked), `accepted`, `rejected` (the "
        "exchange refused), `unavailable` (not sent), `unknown` (the answer was lost)."
    )
    requested_by: str = Field(description="Who asked: an API key's fingerprint, never the key.")
    requested_at: datetime
    completed_at: datetime | None
    reject_code: str | None = Field(
        description="Why it was refused, neutral (e.g. `ORDER_NOT_FOUND`), or "
        "`EXCHANGE_UNAVAILABLE` / `OUTCOME_UNKNOWN`."
    )
    exchange_code: str | None = Field(description="The exchange's own code, when it answered.")
    message: str | None


class CancelOut(OrderOut):
    """The order as stored now, with the cancel request (a repeated cancel while one is
    pending or accepted returns the same request, `duplicate` true)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_ORDER_EXAMPLE, "cancel_request": _CANCEL_EXAMPLE, "duplicate": False}]
        }
    )

    cancel_request: CancelRequestOut
    duplicate: bool = Field(
        description="True when a request already pending or accepted was returned and the "
        "exchange was not asked again."
    )


class OrderDetail(OrderOut):
    """An order with its fills and the signal it came from."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_ORDER_EXAMPLE,
                    "status": "filled",
                    "filled_qty": "0.010",
                    "avg_fill_price": "59000.0",
                    "cum_fee": "0.118",
                    "fills": [
                        {
                            "exec_id": "e0f1a2b3-c4d5-4e6f-8a9b-0c1d2e3f4a5b",
                            "side": "buy",
                            "qty": "0.010",
                            "price": "59000.0",
                            "fee": "0.118",
                            "fee_currency": "USDT",
                            "is_maker": True,
                            "inferred": False,
                            "executed_at": "2026-01-05T10:02:11.000Z",
                        }
                    ],
                    "history": [
                        {
                            "status": "pending_submit",
                            "filled_qty": "0",
                            "at": "2026-01-05T10:02:10.100Z",
                        },
                        {
                            "status": "submitted",
                            "filled_qty": "0",
                            "at": "2026-01-05T10:02:10.180Z",
                        },
                        {
                            "status": "filled",
                            "filled_qty": "0.010",
                            "at": "2026-01-05T10:02:11.020Z",
                        },
                    ],
                    "signal": {
                        "signal_id": "trend-2026-01-05T10:00:00Z-BTC",
                        "status": "placed",
                        "reasons": [],
                        "payload": {
                            "signal_id": "trend-2026-01-05T10:00:00Z-BTC",
                            "symbol": "BTCUSDT",
                            "side": "buy",
                            "qty": "0.010",
                            "price": "59000",
                        },
                    },
                }
            ]
        }
    )

    fills: list[FillOut] = Field(description="Executions, oldest first.")
    history: list[StatusChangeOut] = Field(
        description="Every change of status or filled quantity, oldest first."
    )
    signal: SignalSummary | None = Field(description="`null` for external orders.")


# -- positions ---------------------------------------------------------------------------------

_POSITION_EXAMPLE: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "category": "linear",
    "position_idx": 0,
    "size": "0.5",
    "avg_entry_price": "50000",
    "realized_pnl": "12.5",
    "fees_paid": "13.75",
    "fees": {"USDT": "13.75"},
    "mark_price": "52000",
    "unrealized_pnl": "1000",
    "updated_at": "2026-01-05T10:02:11.000Z",
}


class PositionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_POSITION_EXAMPLE]})

    symbol: str
    category: str
    position_idx: int = Field(description="0 one-way; 1 buy side, 2 sell side in hedge mode.")
    size: DecimalStr = Field(description="Signed: > 0 long, < 0 short.")
    avg_entry_price: DecimalStr
    realized_pnl: DecimalStr = Field(description="Fees excluded (see `fees_paid`).")
    fees_paid: DecimalStr = Field(
        description="In the PnL coin (quote; base coin for inverse); fees paid in the base "
        "coin of a spot pair are converted at their fill price."
    )
    fees: dict[str, DecimalStr] = Field(description="Fees per currency, as paid.")
    mark_price: DecimalStr | None = Field(
        description="The stored mark price, else the exchange's current price; `null` when "
        "neither is available."
    )
    unrealized_pnl: DecimalStr | None = Field(
        description="At `mark_price`: linear and spot in the quote coin, inverse in the base "
        "coin; `null` without a mark price."
    )
    updated_at: datetime


class PositionList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_POSITION_EXAMPLE]}]})

    items: list[PositionOut]


class SnapshotOut(BaseModel):
    id: int
    symbol: str
    category: str
    position_idx: int
    size: DecimalStr
    avg_entry_price: DecimalStr
    realized_pnl: DecimalStr
    fees_paid: DecimalStr
    mark_price: DecimalStr | None
    unrealized_pnl: DecimalStr | None
    reason: str = Field(description="Why it was taken: `fill`, `periodic` or `sync`.")
    created_at: datetime


class SnapshotPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 7,
                            "symbol": "BTCUSDT",
                            "category": "linear",
                            "position_idx": 0,
                            "size": "0.5",
                            "avg_entry_price": "50000",
                            "realized_pnl": "0",
                            "fees_paid": "13.75",
                            "mark_price": "52000",
                            "unrealized_pnl": "1000",
                            "reason": "periodic",
                            "created_at": "2026-01-05T10:05:00.000Z",
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )

    items: list[SnapshotOut] = Field(description="Newest first.")
    next_cursor: str | None = _NEXT_CURSOR


# -- signals -----------------------------------------------------------------------------------


_SIGNAL_ITEM_EXAMPLE: dict[str, Any] = {
    "signal_id": "trend-2026-01-05T10:00:00Z-ETH",
    "status": "rejected",
    "symbol": "ETHUSDT",
    "side": "sell",
    "category": "linear",
    "reasons": [
        {
            "plugin": "engine",
            "code": "TRADING_HALTED",
            "message": "trading is halted: nothing is placed until an operator resumes it",
            "details": {"trading_state": "halted"},
        }
    ],
    "payload": {
        "signal_id": "trend-2026-01-05T10:00:00Z-ETH",
        "symbol": "ETHUSDT",
        "side": "sell",
        "notional": "500",
    },
    "signal_created_at": "2026-01-05T10:00:00Z",
    "received_at": "2026-01-05T10:00:00.020Z",
    "updated_at": "2026-01-05T10:00:00.031Z",
}


class SignalItem(BaseModel):
    """A signal and its outcome, as listed."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SIGNAL_ITEM_EXAMPLE]})

    signal_id: str
    status: str = Field(description="`processing`, `placed`, `rejected` or `dead_lettered`.")
    symbol: str | None
    side: str | None
    category: str | None
    reasons: list[RejectionReason] = Field(description="Every rejection reason.")
    payload: dict[str, Any] = Field(description="The signal as received (numbers as strings).")
    payload_truncated: bool = Field(
        default=False,
        description="`payload` was cut to be served (nested too deep, too large) or had text "
        "that is not valid Unicode replaced; the stored signal is unchanged.",
    )
    signal_created_at: datetime | None = Field(description="When the model made the signal.")
    received_at: datetime
    updated_at: datetime


class SignalOut(SignalItem):
    """A signal, its outcome and the orders it produced."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_SIGNAL_ITEM_EXAMPLE, "orders": []}]}
    )

    orders: list[OrderOut] = Field(description="The orders it produced, by leg.")


class SignalPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_SIGNAL_ITEM_EXAMPLE], "next_cursor": None}]}
    )

    items: list[SignalItem] = Field(description="Newest first (by when they were received).")
    next_cursor: str | None = _NEXT_CURSOR


class SignalReceipt(BaseModel):
    """What became of a submitted signal: queued now, or already known."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "signal_id": "manual-2026-01-05-1",
                    "status": "queued",
                    "duplicate": False,
                    "url": "/api/v1/signals/manual-2026-01-05-1",
                    "signal": None,
                }
            ]
        }
    )

    signal_id: str
    status: str = Field(
        description="`queued` (published to `model-service.trading_signals`, not decided "
        "yet), else the stored outcome: `processing`, `placed`, `rejected`."
    )
    duplicate: bool = Field(
        description="True when the signal id was known: nothing was published again."
    )
    url: str = Field(description="Where to follow its outcome (`GET`).")
    signal: SignalOut | None = Field(description="The stored signal, when it was known.")


# -- trading state -----------------------------------------------------------------------------


class TradingStateOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "state": "halted",
                    "reason": "exchange maintenance 10:00-10:30",
                    "updated_at": "2026-01-05T09:58:00.000Z",
                }
            ]
        }
    )

    state: TradingState = Field(
        description="`active`; `reducing`: only orders that shrink a position; `halted`: no "
        "new orders."
    )
    reason: str
    updated_at: datetime | None = Field(description="`null` while it was never changed.")


class TradingStateUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"state": "halted", "reason": "exchange maintenance 10:00-10:30"}]
        },
    )

    state: TradingState
    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
        # PostgreSQL text cannot hold NUL.
        Field(pattern=r"^[^\x00]*$", description="Why; kept with the state and in the event."),
    ]
