"""Any interleaving, duplication (×3) and reordering of one order's report stream yields the
same final order and position as the in-order stream, and never publishes an event twice."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from om_core.db import migrate
from om_core.db.models import Order, OutboxEvent, Position
from om_core.db.session import SessionFactory, create_engine, create_session_factory
from om_core.updates.apply import UpdateApplier
from om_core.updates.parse import parse_updates
from tests.events_schema import validate_event
from tests.flow.bybit_messages import T0, order_object, stream

_symbols = itertools.count()


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[SessionFactory]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    await migrate.upgrade(url)
    engine = create_engine(url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@st.composite
def order_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One order's reports, in exchange order: New, partial fills, then Filled or Cancelled."""
    qty = Decimal(draw(st.integers(min_value=2, max_value=50)))
    cuts = sorted(set(draw(st.lists(st.integers(1, int(qty) - 1), max_size=4))))
    filled = draw(st.booleans())
    cums = [Decimal(c) for c in cuts] + ([qty] if filled else [])
    prices = draw(st.lists(st.integers(90, 110), min_size=len(cums), max_size=len(cums)))
    reports: list[dict[str, Any]] = []
    t = T0
    base: dict[str, Any] = {"link_id": "", "order_id": "", "qty": str(qty), "price": "100"}
    reports.append({**base, "status": "New", "updated_ms": t})
    value = fee = Decimal(0)
    prev = Decimal(0)
    for cum, price in zip(cums, prices, strict=True):
        t += 10
        value += (cum - prev) * price
        fee += (cum - prev) * price / 1000
        prev = cum
        status = "Filled" if cum == qty else "PartiallyFilled"
        reports.append(
            {
                **base,
                "status": status,
                "cum_qty": str(cum),
                "cum_value": str(value),
                "cum_fee": str(fee),
                "updated_ms": t,
            }
        )
    if not filled:
        reports.append(
            {
                **base,
                "status": "Cancelled",
                "cum_qty": str(prev),
                "cum_value": str(value),
                "cum_fee": str(fee),
                "updated_ms": t + 10,
            }
        )
    return reports


async def run(applier: UpdateApplier, reports: list[dict[str, Any]], symbol: str) -> None:
    oid = f"oid-{symbol}"
    for fields in reports:
        body = stream(order_object(**{**fields, "order_id": oid, "symbol": symbol}))
        for report in parse_updates(json.dumps(body).encode()):
            assert not isinstance(report, str)
            await applier.apply(report)  # type: ignore[arg-type]


async def final_state(sessions: SessionFactory, symbol: str) -> tuple[Any, ...]:
    async with sessions() as session:
        order = (await session.exec(select(Order).where(col(Order.symbol) == symbol))).one()
        pos = (await session.exec(select(Position).where(col(Position.symbol) == symbol))).first()
        events = [
            json.loads(row.payload)
            for row in (await session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))))
            if json.loads(row.payload)["order"]["symbol"] == symbol
        ]
    position = (
        (pos.size, pos.avg_entry_price.quantize(Decimal("1e-12")), pos.fees_paid)
        if pos is not None
        else None
    )
    return (order.status, order.filled_qty, order.cum_exec_value, order.cum_fee), position, events


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reports=order_streams(), data=st.data())
async def test_any_interleaving_converges(
    sessions: SessionFactory, reports: list[dict[str, Any]], data: st.DataObject
) -> None:
    applier = UpdateApplier(sessions)
    n = next(_symbols)
    in_order, shuffled = f"IN{n}USDT", f"SH{n}USDT"
    copies = data.draw(st.lists(st.integers(1, 3), min_size=len(reports), max_size=len(reports)))
    messy = [r for r, k in zip(reports, copies, strict=True) for _ in range(k)]
    messy = data.draw(st.permutations(messy))

    await run(applier, reports, in_order)
    await run(applier, messy, shuffled)

    want_order, want_pos, want_events = await final_state(sessions, in_order)
    got_order, got_pos, got_events = await final_state(sessions, shuffled)
    assert got_order == want_order
    assert got_pos == want_pos

    for events in (want_events, got_events):
        for event in events:
            validate_event(event)
        keys = [(e["event_type"], e["order"]["filled_qty"]) for e in events]
        assert len(keys) == len(set(keys)), keys  # never the same change twice
        terminal = [e for e in events if e["event_type"] in {"order.filled", "order.cancelled"}]
        assert len(terminal) == 1 and terminal[0] is events[-1]
        assert events[0]["event_type"] == "order.created"
    # In order, every real change is published: created, each partial fill, the end.
    fills = sum(1 for r in reports if r["status"] == "PartiallyFilled")
    assert len(want_events) == 2 + fills
