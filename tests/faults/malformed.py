"""Deterministic generators of malformed signals and order updates, each invalid by
construction (the contracts in docs/signals.md and docs/events.md say why), so the test knows
the truth without asking the parser it tests."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from tests.faults.support import market_signal
from tests.flow.bybit_messages import order_object, stream

#: A JSON text never starts with these (and 0x80-0xff are not even UTF-8 there).
_BAD_FIRST = b"\x00\x01#%&')*+,/:;<=>?@\\^`|}~\x80\xc3\xfe\xff"


def random_bytes(rng: random.Random) -> bytes:
    return bytes([rng.choice(_BAD_FIRST)]) + rng.randbytes(rng.randrange(0, 64))


def truncated(rng: random.Random, valid: dict[str, Any]) -> bytes:
    text = json.dumps(valid).encode()
    return text[: rng.randrange(1, len(text) - 1)]


def not_utf8(rng: random.Random, valid: dict[str, Any]) -> bytes:
    text = bytearray(json.dumps(valid).encode())
    text[rng.randrange(1, len(text) - 1)] = rng.choice(b"\x80\xc0\xfe\xff")
    return bytes(text)


def deep(rng: random.Random) -> bytes:
    depth = rng.randrange(3000, 20000)
    return b"[" * depth + b"]" * depth


def _with(valid: dict[str, Any], **changes: Any) -> bytes:
    data = dict(valid)
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data).encode()


_DROP = object()

#: Values no signal field of that name accepts.
_BAD_SIGNAL_FIELDS: dict[str, list[Any]] = {
    "signal_id": [_DROP, "", "x" * 129, None],
    "symbol": [_DROP, "", 7, None, ["BTCUSDT"]],
    "side": [_DROP, "hold", "", 1, None, "long"],
    "qty": ["0", "-1", "abc", True, [], {}, "NaN"],
    "price": ["0", "-5", "nan?", False],
    "notional": ["-100", "0", "ten"],
    "strength": [2, -1, "strong"],
    "category": ["futures", 3],
    "order_type": ["stop", 5],
    "time_in_force": ["GTX", 1],
    "reduce_only": ["maybe", 2],
    "created_at": ["yesterday", "2026-13-45", [1]],
    "metadata": [5, "text", [1, 2]],
}


def bad_signal(rng: random.Random, n: int) -> bytes:
    valid = market_signal(f"fz-bad-{n}", n)
    kind = rng.randrange(8)
    if kind == 0:
        return random_bytes(rng)
    if kind == 1:
        return truncated(rng, valid)
    if kind == 2:
        return not_utf8(rng, valid)
    if kind == 3:
        return json.dumps(rng.choice([[valid], "signal", 42, None, True, []])).encode()
    if kind == 4:
        # JSON's non-standard constants: refused, never parsed to a float.
        text = json.dumps({**valid, "qty": "__X__"}).encode()
        return text.replace(b'"__X__"', rng.choice([b"NaN", b"Infinity", b"-Infinity"]))
    field = rng.choice(sorted(_BAD_SIGNAL_FIELDS))
    return _with(valid, **{field: rng.choice(_BAD_SIGNAL_FIELDS[field])})


#: Values no order-report field of that name accepts.
_BAD_ORDER_FIELDS: dict[str, list[Any]] = {
    "orderStatus": [_DROP, "", None, 3],
    "symbol": [_DROP, "", 5],
    "side": [_DROP, "Hold", "", 0],
    "qty": [_DROP, "", "-1", "abc", True],
    "cumExecQty": ["-1", "abc", "NaN", "Infinity", [1]],
    "cumExecValue": ["-3", "x"],
    "updatedTime": ["abc", "-5", [1]],
    "positionIdx": ["one", True],
}


def bad_update(rng: random.Random, n: int) -> bytes:
    valid = order_object(link_id=f"fz-upd-{n}", order_id=f"fz-oid-{n}", status="New")
    kind = rng.randrange(9)
    if kind == 0:
        return random_bytes(rng)
    if kind == 1:
        return truncated(rng, stream(valid))
    if kind == 2:
        return not_utf8(rng, stream(valid))
    if kind == 3:
        return json.dumps(
            rng.choice(
                [
                    {"topic": "position", "data": [valid]},
                    {"data": []},
                    {"topic": 5, "data": [valid]},
                    {"topic": "order"},
                    "order",
                    17,
                    {"hello": "world"},
                ]
            )
        ).encode()
    if kind == 4:
        nested: Any = valid
        for _ in range(5):
            nested = {"data": nested}
        return json.dumps(nested).encode()
    if kind == 5:
        return json.dumps(
            stream({k: v for k, v in valid.items() if k not in ("orderId", "orderLinkId")})
        ).encode()
    if kind == 6:
        execution = {
            "execId": f"fz-exec-{n}",
            "orderId": f"fz-oid-{n}",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "execQty": rng.choice(["0", "-1", "", "x"]),
            "execPrice": "60000",
        }
        return json.dumps(stream(execution, topic="execution")).encode()
    field = rng.choice(sorted(_BAD_ORDER_FIELDS))
    changed = json.loads(_with(valid, **{field: rng.choice(_BAD_ORDER_FIELDS[field])}))
    return json.dumps(stream(changed) if rng.random() < 0.5 else changed).encode()


Generator = Callable[[random.Random, int], bytes]
