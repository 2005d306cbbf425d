"""Read ``ws-gateway.order`` messages into typed order and execution reports.

Accepted shapes (unknown fields are ignored):

* Bybit's V5 private stream message: ``{"topic": "order" | "execution", "data": [...]}``;
* a single Bybit order object (``{"orderId": …, "orderStatus": …}``) or execution object
  (``{"execId": …}``);
* either of those wrapped by a gateway: ``{"source": …, "received_at": …, "data": <shape>}``;
* the gateway's control message ``{"type": "gateway.reconnected", …}``.

Numbers are strings in Bybit's payloads; ``""`` means absent. All become ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from om_core.signals.contract import InvalidSignal, decode_json

__all__ = [
    "ControlMessage",
    "ExecutionReport",
    "InvalidUpdate",
    "OrderReport",
    "parse_updates",
]


class InvalidUpdate(ValueError):
    """The message can never be applied; the reason says why."""


@dataclass(frozen=True, slots=True)
class OrderReport:
    """One order object from the ``order`` topic: the exchange's cumulative truth."""

    order_id: str
    order_link_id: str
    symbol: str
    category: str
    side: str
    order_type: str
    status: str
    price: Decimal | None
    qty: Decimal
    avg_price: Decimal | None
    cum_exec_qty: Decimal
    cum_exec_value: Decimal
    cum_exec_fee: Decimal
    leaves_qty: Decimal | None
    reject_reason: str
    cancel_type: str
    created_ms: int | None
    updated_ms: int | None
    position_idx: int
    reduce_only: bool
    time_in_force: str
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """One fill from the ``execution`` topic, identified by ``exec_id``."""

    exec_id: str
    order_id: str
    order_link_id: str
    symbol: str
    category: str
    side: str
    exec_qty: Decimal
    exec_price: Decimal
    exec_fee: Decimal
    order_qty: Decimal | None
    leaves_qty: Decimal | None
    exec_ms: int | None
    exec_type: str
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class ControlMessage:
    type: str
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


Report = OrderReport | ExecutionReport | ControlMessage


def parse_updates(body: bytes) -> list[Report]:
    """Every report in the message, in order; raises :class:`InvalidUpdate`."""
    try:
        data = decode_json(body)
    except InvalidSignal as exc:
        raise InvalidUpdate(str(exc)) from None
    return _walk(data, topic=None, depth=0)


def _walk(data: Any, *, topic: str | None, depth: int) -> list[Report]:
    if depth > 3:
        raise InvalidUpdate("message nested too deeply")
    if isinstance(data, list):
        if not data:
            raise InvalidUpdate("empty data list")
        out: list[Report] = []
        for index, item in enumerate(data):
            try:
                out.extend(_walk(item, topic=topic, depth=depth + 1))
            except InvalidUpdate as exc:
                raise InvalidUpdate(f"data[{index}]: {exc}") from None
        return out
    if not isinstance(data, Mapping):
        raise InvalidUpdate(f"expected an object, got {type(data).__name__}")
    if data.get("type") == "gateway.reconnected" or data.get("op") == "gateway.reconnected":
        return [ControlMessage(type="gateway.reconnected", raw=data)]
    if "topic" in data or ("data" in data and not _looks_like_order(data)):
        inner_topic = data.get("topic", topic)
        if inner_topic is not None and not isinstance(inner_topic, str):
            raise InvalidUpdate("topic must be a string")
        if inner_topic is not None and inner_topic not in {"order", "execution"}:
            raise InvalidUpdate(f"unsupported topic {inner_topic!r}")
        if "data" not in data:
            raise InvalidUpdate("message has no data")
        return _walk(data["data"], topic=inner_topic, depth=depth + 1)
    if "execId" in data or topic == "execution":
        return [_execution(data)]
    if "orderStatus" in data or topic == "order":
        return [_order(data)]
    raise InvalidUpdate("neither an order, an execution nor a stream message")


def _looks_like_order(data: Mapping[str, Any]) -> bool:
    return "orderStatus" in data or "execId" in data


def _order(d: Mapping[str, Any]) -> OrderReport:
    order_id = _str(d, "orderId")
    link = _str(d, "orderLinkId", required=False)
    if not order_id and not link:
        raise InvalidUpdate("order has neither orderId nor orderLinkId")
    status = _str(d, "orderStatus")
    return OrderReport(
        order_id=order_id,
        order_link_id=link,
        symbol=_str(d, "symbol"),
        category=_str(d, "category", required=False) or "linear",
        side=_side(d),
        order_type=_str(d, "orderType", required=False),
        status=status,
        price=_dec(d, "price"),
        qty=_dec(d, "qty", required=True) or Decimal(0),
        avg_price=_dec(d, "avgPrice"),
        cum_exec_qty=_dec(d, "cumExecQty") or Decimal(0),
        cum_exec_value=_dec(d, "cumExecValue") or Decimal(0),
        cum_exec_fee=_dec(d, "cumExecFee") or Decimal(0),
        leaves_qty=_dec(d, "leavesQty"),
        reject_reason=_str(d, "rejectReason", required=False),
        cancel_type=_str(d, "cancelType", required=False),
        created_ms=_ms(d, "createdTime"),
        updated_ms=_ms(d, "updatedTime"),
        position_idx=_int(d, "positionIdx"),
        reduce_only=bool(d.get("reduceOnly", False)),
        time_in_force=_str(d, "timeInForce", required=False),
        raw=d,
    )


def _execution(d: Mapping[str, Any]) -> ExecutionReport:
    qty = _dec(d, "execQty", required=True)
    price = _dec(d, "execPrice", required=True)
    assert qty is not None and price is not None
    if qty <= 0:
        raise InvalidUpdate(f"execQty must be positive (got {qty})")
    return ExecutionReport(
        exec_id=_str(d, "execId"),
        order_id=_str(d, "orderId"),
        order_link_id=_str(d, "orderLinkId", required=False),
        symbol=_str(d, "symbol"),
        category=_str(d, "category", required=False) or "linear",
        side=_side(d),
        exec_qty=qty,
        exec_price=price,
        exec_fee=_dec(d, "execFee") or Decimal(0),
        order_qty=_dec(d, "orderQty"),
        leaves_qty=_dec(d, "leavesQty"),
        exec_ms=_ms(d, "execTime"),
        exec_type=_str(d, "execType", required=False) or "Trade",
        raw=d,
    )


def _str(d: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = d.get(key)
    if value is None or value == "":
        if required:
            raise InvalidUpdate(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise InvalidUpdate(f"{key} must be a string (got {type(value).__name__})")
    return value


def _side(d: Mapping[str, Any]) -> str:
    side = _str(d, "side")
    if side.lower() not in {"buy", "sell"}:
        raise InvalidUpdate(f"side must be Buy or Sell (got {side!r})")
    return side.lower()


def _dec(d: Mapping[str, Any], key: str, *, required: bool = False) -> Decimal | None:
    value = d.get(key)
    if value is None or value == "":
        if required:
            raise InvalidUpdate(f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidUpdate(f"{key} must be a decimal string (got {value!r})")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise InvalidUpdate(f"{key} is not a number (got {value!r})") from None
    if not result.is_finite() or result < 0:
        raise InvalidUpdate(f"{key} must be a finite non-negative number (got {value!r})")
    return result


def _ms(d: Mapping[str, Any], key: str) -> int | None:
    value = d.get(key)
    if value is None or value == "":
        return None
    try:
        ms = int(value)
    except (TypeError, ValueError):
        raise InvalidUpdate(f"{key} must be epoch milliseconds (got {value!r})") from None
    if ms < 0:
        raise InvalidUpdate(f"{key} must be epoch milliseconds (got {value!r})")
    return ms


def _int(d: Mapping[str, Any], key: str) -> int:
    value = d.get(key, 0)
    if isinstance(value, bool):
        raise InvalidUpdate(f"{key} must be an integer")
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise InvalidUpdate(f"{key} must be an integer (got {value!r})") from None


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)
