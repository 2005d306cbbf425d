"""Stall hunt (issue 14, build item 6, the bus half): hostile traffic on both input queues
never stops the service.

For each Hypothesis example, a fresh service on PostgreSQL + RabbitMQ (paper exchange) gets a
burst of hostile messages on ``model-service.trading_signals`` and ``ws-gateway.order`` —
malformed and truncated JSON, deep nesting, huge numbers, odd timestamps, NUL and lone
surrogates, wrong types, oversized strings — then one valid signal. Within a deadline:

* the valid signal is placed and its fill (published by the paper exchange on
  ``ws-gateway.order``) applied: nothing stalls;
* every hostile message is accounted for: a signal is placed, rejected with a
  ``signal.rejected`` event, or in ``<queue>.dlq`` with its reason; an order update is in
  ``<queue>.dlq`` with its reason, or it was one the decoder accepts (applied);
* nothing is left in the input queues or held unacknowledged.

The assertions are generic on purpose: a tighter signal contract moves a message from
"rejected" to "dead-lettered" (or back) without changing what the test asks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from om_core.db.models import OutboxEvent
from om_core.messaging.base import ERROR_HEADER, dlq_name
from om_core.messaging.topology import ORDER_UPDATES_QUEUE, SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id
from om_core.updates.validate import check_reports
from om_plugins.reports import InvalidReport, decode_reports
from tests.conftest import wait_for
from tests.flow.reports import message, order
from tests.flow.stack import Stack, running

#: Seconds the valid signal and its fill get after the hostile burst.
DEADLINE = 45.0
_examples = itertools.count()

# -- hostile values ----------------------------------------------------------------------------

_huge_numbers = st.sampled_from(
    [
        "1e30",
        "1E+400",
        "-1e30",
        "99999999999999999999999999999999999999999",
        "0.0000000000000000000000000001",
        10**40,
        -(10**25),
        1e308,
        "NaN",
        "Infinity",
        "",
    ]
)
_odd_times = st.sampled_from(
    [
        "99999999999999999999",
        99999999999999999999,
        "2999-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999+00:00",
        "2026-13-45T99:99:99Z",
        "1970-01-01T00:00:00Z",
        "2026-01-01T00:00:00",
        -1,
        1e20,
        "²",
        "now",
    ]
)
_odd_text = st.sampled_from(
    [
        "BTC\x00USDT",
        "\x00",
        "\ud800",
        "BTCUSDT\n",
        "BTCU\u017fDT",
        "x" * 300,
        "y" * 70_000,
        " ",
        "\u202e",
    ]
)
_wrong_types = st.sampled_from([None, True, [], {}, ["BTCUSDT"], {"a": 1}, 0, -1])
_hostile_value = _huge_numbers | _odd_times | _odd_text | _wrong_types


def _deep(depth: int, *, array: bool) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if array else {"k": value}
    return value


_SIGNAL_FIELDS = ["signal_id", "symbol", "side", "qty", "price", "created_at", "metadata", "x"]
_REPORT_FIELDS = [
    "kind",
    "exchange_order_id",
    "client_order_id",
    "symbol",
    "side",
    "status",
    "qty",
    "filled_qty",
    "price",
    "position_idx",
    "created_at",
    "updated_at",
    "fees",
]


def _json(data: Any) -> bytes:
    """Encode like a careless publisher: lone surrogates escaped, deep values as they come."""
    try:
        return json.dumps(data, default=str).encode()
    except RecursionError:
        return b"[" * 5000 + b"]" * 5000


@st.composite
def hostile_signal(draw: st.DrawFn, n: int) -> bytes:
    kind = draw(st.sampled_from(["field", "field", "field", "bytes", "truncated", "deep"]))
    base: dict[str, Any] = {
        "signal_id": f"hunt-{n}",
        "symbol": "BTCUSDT",
        "side": "buy",
        "qty": "0.001",
    }
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "truncated":
        body = _json(base)
        return body[: draw(st.integers(0, len(body) - 1))]
    if kind == "deep":
        depth = draw(st.sampled_from([40, 300, 900, 3000]))
        base["metadata"] = _deep(depth, array=draw(st.booleans()))
        return _json(base)
    for _ in range(draw(st.integers(1, 2))):
        base[draw(st.sampled_from(_SIGNAL_FIELDS))] = draw(_hostile_value)
    return _json(base)


@st.composite
def hostile_update(draw: st.DrawFn, n: int) -> bytes:
    kind = draw(st.sampled_from(["field", "field", "field", "bytes", "truncated", "deep"]))
    report: dict[str, Any] = json.loads(
        message(order(cid=f"hunt-upd-{n}", oid=f"hunt-oid-{n}", status="new"))
    )
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "truncated":
        body = _json(report)
        return body[: draw(st.integers(0, len(body) - 1))]
    if kind == "deep":
        report["reports"][0]["raw"] = _deep(draw(st.sampled_from([40, 900, 3000])), array=True)
        return _json(report)
    item = report["reports"][0]
    for _ in range(draw(st.integers(1, 2))):
        item[draw(st.sampled_from(_REPORT_FIELDS))] = draw(_hostile_value)
    return _json(report)


@st.composite
def bursts(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    count = draw(st.integers(5, 20))
    traffic = []
    for n in range(count):
        if draw(st.booleans()):
            traffic.append((SIGNALS_QUEUE, draw(hostile_signal(n))))
        else:
            traffic.append((ORDER_UPDATES_QUEUE, draw(hostile_update(n))))
    return traffic


# -- the hunt ----------------------------------------------------------------------------------


@settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(traffic=bursts())
def test_hostile_traffic_never_stalls_and_every_message_is_accounted_for(
    server_urls: tuple[str, str], traffic: list[tuple[str, bytes]]
) -> None:
    asyncio.run(_hunt(server_urls, traffic, next(_examples)))


async def _hunt(urls: tuple[str, str], traffic: list[tuple[str, bytes]], example: int) -> None:
    # Each example has its own ids: the database and vhost are shared by the examples.
    tag = f"x{example}-"
    traffic = [(q, body.replace(b"hunt-", b"hunt-" + tag.encode())) for q, body in traffic]
    valid = f"hunt-valid-{example}"
    async with running(*urls, env={"OM_PREFETCH": "16"}) as stack:
        bus = stack.service.bus
        for queue, body in traffic:
            await bus.publish(queue, body)
        await stack.publish(
            {"signal_id": valid, "symbol": "BTCUSDT", "side": "buy", "qty": "0.001"}
        )

        assert (await stack.outcome(valid, timeout=DEADLINE)).status == "placed"
        await stack.order_status(client_order_id(valid, 0), "filled", timeout=DEADLINE)
        await wait_for(lambda: _drained(stack), timeout=DEADLINE, message="input queues drained")

        dead = {
            queue: await _take(stack, dlq_name(queue))
            for queue in (SIGNALS_QUEUE, ORDER_UPDATES_QUEUE)
        }
        for queue, body in traffic:
            if dead[queue][body] > 0:
                dead[queue][body] -= 1
                continue
            if queue == SIGNALS_QUEUE:
                await _signal_accounted_for(stack, body)
            else:
                _update_accounted_for(body)
        leftovers = {q: +c for q, c in dead.items() if +c}
        assert not leftovers, f"dead letters nobody sent: {leftovers}"


async def _drained(stack: Stack) -> bool:
    bus = stack.service.bus
    for queue in (SIGNALS_QUEUE, ORDER_UPDATES_QUEUE):
        if await bus.message_count(queue) or bus.activity.unacked(queue):
            return False
    return True


async def _take(stack: Stack, dlq: str) -> Counter[bytes]:
    taken: Counter[bytes] = Counter()
    while (m := await stack.service.bus.get(dlq, timeout=0)) is not None:
        assert m.headers.get(ERROR_HEADER), f"no reason on {m.body[:80]!r}"
        taken[m.body] += 1
    return taken


async def _signal_accounted_for(stack: Stack, body: bytes) -> None:
    """Not dead-lettered: it must have been read, and decided with its event."""
    data = json.loads(body, parse_float=Decimal)
    signal_id = data["signal_id"]
    row = await stack.signal_row(signal_id)
    assert row is not None, f"signal {signal_id!r} neither decided nor dead-lettered"
    assert row.status in ("placed", "rejected"), (signal_id, row.status)
    if row.status == "rejected":
        async with stack.service.sessions() as session:
            events = (
                await session.exec(
                    select(OutboxEvent.payload).where(
                        col(OutboxEvent.event_type) == "signal.rejected"
                    )
                )
            ).all()
        assert any(json.loads(p).get("signal_id") == signal_id for p in events), signal_id


def _update_accounted_for(body: bytes) -> None:
    """Not dead-lettered: it must be an update the engine can read and store (applied)."""
    try:
        check_reports(decode_reports(body))
    except InvalidReport as exc:
        raise AssertionError(f"an invalid update was acknowledged: {exc}: {body[:120]!r}") from None
