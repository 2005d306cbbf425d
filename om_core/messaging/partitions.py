"""Partitioned input on RabbitMQ: all of one symbol's messages go to one partition queue, and
each partition queue is consumed by one instance at a time.

Producers keep publishing to the entry queues (``model-service.trading_signals``,
``ws-gateway.order``). With ``OM_PARTITIONS=N`` (N ≥ 1) the service adds, per entry queue:

* a durable ``x-consistent-hash`` exchange ``<entry>.partitions`` (RabbitMQ's
  ``rabbitmq_consistent_hash_exchange`` plugin), hashing the routing key — the symbol;
* N partition queues ``<entry>.p0`` … ``<entry>.p<N-1>``, bound to it with equal weight, of
  the entry queue's type, with ``x-single-active-consumer`` and dead-lettering into the entry
  queue's ``.dlq``;
* a *router*: one instance at a time consumes the entry queue in order, publishes each message
  to the exchange with its symbol as the routing key (publisher confirms) and acknowledges it
  only then. One router keeps one symbol's messages in their publish order across the hop;
  a router killed between publish and acknowledgement makes the broker deliver the message
  again, so a partition may see it twice — the consumers are idempotent (signals by
  ``signal_id``, order reports by the exchange's cumulative figures).

Which instance runs which router and partitions is :mod:`om_core.cluster`'s business.

This module holds the names and the routing rules; the RabbitMQ side is in
:mod:`om_core.messaging.rabbitmq`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from om_core.messaging.topology import ORDER_UPDATES_QUEUE, SIGNALS_QUEUE

__all__ = [
    "PARTITIONED_QUEUES",
    "ROUTES",
    "Routed",
    "exchange_name",
    "partition_queue",
    "partition_queues",
    "route_signal",
    "route_update",
]

#: Entry queues whose messages are partitioned by symbol.
PARTITIONED_QUEUES = (SIGNALS_QUEUE, ORDER_UPDATES_QUEUE)
#: Routing key of a message without a symbol we can read: it still goes to one fixed
#: partition, whose consumer dead-letters it with the reason (one place validates).
NO_SYMBOL = ""


def exchange_name(entry: str) -> str:
    return f"{entry}.partitions"


def partition_queue(entry: str, index: int) -> str:
    return f"{entry}.p{index}"


def partition_queues(entry: str, count: int) -> tuple[str, ...]:
    return tuple(partition_queue(entry, i) for i in range(count))


@dataclass(frozen=True, slots=True)
class Routed:
    """One message to publish to the partition exchange."""

    routing_key: str
    body: bytes
    #: ``None``: keep the original message id.
    message_id: str | None = None


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        return None


def _symbol(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def route_signal(body: bytes, message_id: str | None) -> list[Routed]:
    """A signal goes whole to its symbol's partition."""
    data = _decode(body)
    symbol = _symbol(data.get("symbol")) if isinstance(data, Mapping) else None
    return [Routed(symbol or NO_SYMBOL, body)]


def route_update(body: bytes, message_id: str | None) -> list[Routed]:
    """An order-stream message goes whole to its symbol's partition; one that reports on
    several symbols (Bybit pushes orders that changed together in one message) is split into
    one message per symbol, shaped like the original, with ids ``<message_id>:<symbol>``."""
    data = _decode(body)
    parts = _by_symbol(data, depth=0) if data is not None else None
    if not parts:
        return [Routed(NO_SYMBOL, body)]
    if len(parts) == 1:
        return [Routed(next(iter(parts)), body)]
    # Without a message id, one derived from the body: the same on every redelivery.
    base = message_id or hashlib.sha256(body).hexdigest()[:32]
    return [
        Routed(symbol, _encode(part), f"{base}:{symbol}") for symbol, part in sorted(parts.items())
    ]


def _by_symbol(data: Any, *, depth: int) -> dict[str, Any] | None:
    """``{symbol: the part of data about it}``; ``None`` when a part has no symbol (a control
    message, an unknown shape): such a message is routed whole."""
    if depth > 4:
        return None
    if isinstance(data, list):
        out: dict[str, list[Any]] = {}
        for item in data:
            parts = _by_symbol(item, depth=depth + 1)
            if parts is None:
                return None
            for symbol, part in parts.items():
                out.setdefault(symbol, []).append(part)
        return dict(out) or None
    if not isinstance(data, Mapping):
        return None
    # An envelope carries its records under "data" and names no symbol itself; a record that
    # happens to have a "data" field names its symbol and is routed whole.
    if "data" in data and "symbol" not in data:
        inner = _by_symbol(data["data"], depth=depth + 1)
        if inner is None:
            return None
        return {symbol: {**data, "data": part} for symbol, part in inner.items()}
    own = _symbol(data.get("symbol"))
    return {own: data} if own else None


def _encode(value: Any) -> bytes:
    # Decimals from the original's JSON numbers become strings, the form Bybit sends them in.
    return json.dumps(value, default=_decimal, separators=(",", ":")).encode("utf-8")


def _decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot encode {type(value).__name__}")


#: How each partitioned entry queue's messages are routed.
ROUTES: Mapping[str, Callable[[bytes, str | None], list[Routed]]] = {
    SIGNALS_QUEUE: route_signal,
    ORDER_UPDATES_QUEUE: route_update,
}
