"""Build order-stream messages shaped exactly like Bybit V5's (numbers as strings)."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

#: Verbatim copies of Bybit's documented examples (bybit-exchange/docs; SOURCES.tsv names the
#: page and line of each).
EXAMPLES = Path(__file__).resolve().parent / "bybit_examples"
#: Twelve hours ahead of now: test reports stay newer than the paper exchange's own however
#: long the suite runs, and within the engine's bound on future timestamps (a day ahead:
#: om_core/updates/validate.py).
T0 = int(time.time() * 1000) + 43_200_000
_clock = itertools.count(T0 + 100_000, 10)


def example(name: str) -> dict[str, Any]:
    """A payload copied verbatim from Bybit's docs."""
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def order_object(
    *,
    link_id: str,
    order_id: str,
    status: str,
    qty: str = "0.010",
    cum_qty: str = "0",
    cum_value: str = "0",
    cum_fee: str = "0",
    side: str = "Buy",
    symbol: str = "BTCUSDT",
    price: str = "50000",
    order_type: str = "Limit",
    updated_ms: int | None = None,
    position_idx: int = 0,
    reject_reason: str = "EC_NoError",
) -> dict[str, Any]:
    leaves = Decimal(qty) - Decimal(cum_qty)
    if status in {"Cancelled", "Rejected", "PartiallyFilledCanceled", "Deactivated"}:
        leaves = Decimal(0)
    avg = (Decimal(cum_value) / Decimal(cum_qty)) if Decimal(cum_qty) else None
    return {
        "category": "linear",
        "symbol": symbol,
        "orderId": order_id,
        "orderLinkId": link_id,
        "side": side,
        "orderType": order_type,
        "cancelType": "UNKNOWN",
        "price": price,
        "qty": qty,
        "timeInForce": "GTC",
        "orderStatus": status,
        "reduceOnly": False,
        "leavesQty": str(leaves),
        "leavesValue": "",
        "cumExecQty": cum_qty,
        "cumExecValue": cum_value,
        "avgPrice": "" if avg is None else str(avg),
        "cumExecFee": cum_fee,
        "positionIdx": position_idx,
        "closedPnl": "0",
        "createdTime": "1764000000000",
        "updatedTime": str(updated_ms if updated_ms is not None else next(_clock)),
        "rejectReason": reject_reason,
        "takeProfit": "",
        "stopLoss": "",
        "triggerPrice": "",
    }


def stream(*orders: dict[str, Any], topic: str = "order") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "creationTime": next(_clock),
        "data": list(orders),
    }


def enveloped(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "ws-gateway",
        "account": "main",
        "received_at": "2026-11-25T10:00:00+00:00",
        "data": message,
    }
