"""Any permutation and duplication of one order's order reports and executions — several per
message, any arrival order — ends in the same order, fills, average, fees and position as the
in-order stream, and never publishes the same change twice.

Covers linear, inverse (contracts, values in the base coin) and spot (buy fees in the base
coin, which shrink the holding), from a flat position or one an earlier order left.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from om_core.db import migrate
from om_core.db.models import Fill, Order, OutboxEvent, Position
from om_core.db.session import SessionFactory, create_engine, create_session_factory
from om_core.instruments import Instruments
from om_core.updates.apply import UpdateApplier
from om_plugins import (
    Balance,
    Category,
    ExchangeAdapter,
    ExecutionReport,
    Fee,
    Instrument,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    PlacedOrder,
    QtyUnit,
    Side,
)
from om_plugins.reports import decode_reports, encode_reports
from tests.events_schema import validate_event
from tests.flow.reports import T0, at

_symbols = itertools.count()


class _Rules(ExchangeAdapter):
    """Instrument rules only: what the engine asks the exchange while applying reports."""

    name = "rules"

    async def get_instrument(self, category: Category, symbol: str) -> Instrument:
        if category is Category.INVERSE:
            return Instrument(
                symbol,
                category,
                Decimal("0.5"),
                Decimal(1),
                Decimal(1),
                Decimal(10**6),
                base_coin="BTC",
                quote_coin="USD",
                qty_unit=QtyUnit.CONTRACTS,
                settle_coin="BTC",
            )
        return Instrument(
            symbol,
            category,
            Decimal("0.01"),
            Decimal("0.001"),
            Decimal("0.001"),
            Decimal(1000),
            base_coin="BTC",
            quote_coin="USDT",
            settle_coin="USDT",
        )

    async def get_reference_price(self, category: Category, symbol: str) -> Decimal:
        raise NotImplementedError

    async def get_balance(self, coin: str) -> Balance:
        raise NotImplementedError

    async def place_order(self, request: OrderRequest) -> PlacedOrder:
        raise NotImplementedError

    async def get_order(
        self, category: Category, symbol: str, cid: str, *, exchange_order_id: str = ""
    ) -> OrderReport | None:
        raise NotImplementedError

    async def cancel_order(self, category: Category, symbol: str, cid: str) -> None:
        raise NotImplementedError

    async def list_open_orders(
        self, category: Category, symbol: str | None = None
    ) -> list[OrderReport]:
        raise NotImplementedError


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[SessionFactory]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    await migrate.upgrade(url)
    engine = create_engine(url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Trade:
    """One order's story in exchange order: executions and order reports, interleaved."""

    category: Category
    side: Side
    qty: Decimal
    #: (qty, price, fee) of each execution.
    fills: tuple[tuple[Decimal, Decimal, Decimal], ...]
    cancelled: bool
    fee_currency: str
    order_qty_on_executions: bool = True

    def value(self, qty: Decimal, price: Decimal) -> Decimal:
        return qty / price if self.category is Category.INVERSE else qty * price


@st.composite
def trades(draw: st.DrawFn) -> Trade:
    category = draw(st.sampled_from([Category.LINEAR, Category.INVERSE, Category.SPOT]))
    side = Side.BUY if category is Category.SPOT else draw(st.sampled_from(list(Side)))
    qty = Decimal(draw(st.integers(min_value=2, max_value=40)))
    cuts = sorted(set(draw(st.lists(st.integers(1, int(qty) - 1), max_size=4))))
    cancelled = draw(st.booleans()) and bool(cuts)
    cums = [Decimal(c) for c in cuts] + ([] if cancelled else [qty])
    fills = []
    prev = Decimal(0)
    for cum in cums:
        price = Decimal(draw(st.integers(90, 110))) * 10
        # Fees: a taker fee, or a maker rebate now and then.
        fee = (cum - prev) * Decimal(draw(st.sampled_from(["0.0006", "-0.0001", "0"])))
        if category is Category.LINEAR:
            fee *= price
        fills.append((cum - prev, price, fee))
        prev = cum
    # Spot buys pay their fee in the base coin; inverse fees are in the base coin too.
    currency = "USDT" if category is Category.LINEAR else "BTC"
    return Trade(category, side, qty, tuple(fills), cancelled, currency, draw(st.booleans()))


def story(trade: Trade, symbol: str) -> list[OrderReport | ExecutionReport]:
    """The reports in the order the exchange sent them."""
    oid, cid = f"oid-{symbol}", f"cid-{symbol}"
    t = T0
    reports: list[OrderReport | ExecutionReport] = []

    def report(status: OrderStatus, filled: Decimal, value: Decimal, fee: Decimal) -> OrderReport:
        return OrderReport(
            exchange_order_id=oid,
            client_order_id=cid,
            category=trade.category,
            symbol=symbol,
            side=trade.side,
            status=status,
            qty=trade.qty,
            order_type=OrderType.LIMIT,
            price=Decimal(1000),
            filled_qty=filled,
            filled_value=value,
            fees=(Fee(fee, trade.fee_currency),) if fee else (),
            updated_at=at(t),
        )

    reports.append(report(OrderStatus.NEW, Decimal(0), Decimal(0), Decimal(0)))
    filled = value = fee = Decimal(0)
    for n, (qty, price, exec_fee) in enumerate(trade.fills):
        t += 10
        filled, value, fee = filled + qty, value + trade.value(qty, price), fee + exec_fee
        reports.append(
            ExecutionReport(
                exec_id=f"{symbol}-e{n}",
                exchange_order_id=oid,
                client_order_id=cid,
                category=trade.category,
                symbol=symbol,
                side=trade.side,
                qty=qty,
                price=price,
                executed_at=at(t),
                fee=Fee(exec_fee, trade.fee_currency),
                value=trade.value(qty, price),
                # Bybit's executions carry the order's quantity; others may not.
                order_qty=trade.qty if trade.order_qty_on_executions else None,
            )
        )
        done = filled == trade.qty
        status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        reports.append(report(status, filled, value, fee))
    if trade.cancelled:
        t += 10
        reports.append(report(OrderStatus.CANCELLED, filled, value, fee))
    return reports


def seed(trade: Trade, symbol: str, opposite: bool) -> list[OrderReport | ExecutionReport]:
    """An earlier order that leaves a position: the trade then adds to it or reduces it."""
    side = trade.side if not opposite else (Side.SELL if trade.side is Side.BUY else Side.BUY)
    if trade.category is Category.SPOT:
        side = Side.BUY  # a spot account cannot be short
    qty, price = Decimal(5), Decimal(1000)
    value = trade.value(qty, price)
    return [
        ExecutionReport(
            exec_id=f"{symbol}-seed",
            exchange_order_id=f"seed-{symbol}",
            client_order_id=f"seed-{symbol}",
            category=trade.category,
            symbol=symbol,
            side=side,
            qty=qty,
            price=price,
            executed_at=at(T0 - 100),
            value=value,
        ),
        OrderReport(
            exchange_order_id=f"seed-{symbol}",
            client_order_id=f"seed-{symbol}",
            category=trade.category,
            symbol=symbol,
            side=side,
            status=OrderStatus.FILLED,
            qty=qty,
            order_type=OrderType.MARKET,
            filled_qty=qty,
            filled_value=value,
            updated_at=at(T0 - 100),
        ),
    ]


async def run(applier: UpdateApplier, messages: Sequence[Sequence[Any]]) -> None:
    for reports in messages:
        # Through the neutral wire form, as the paper exchange publishes them.
        decoded = decode_reports(encode_reports(reports))
        if len(decoded) > 1:
            await applier.apply_many(decoded)  # type: ignore[arg-type]
        else:
            await applier.apply(decoded[0])  # type: ignore[arg-type]


async def final_state(sessions: SessionFactory, symbol: str) -> tuple[Any, ...]:
    async with sessions() as session:
        order = (
            await session.exec(select(Order).where(col(Order.client_order_id) == f"cid-{symbol}"))
        ).one()
        fills = (
            await session.exec(
                select(Fill).where(col(Fill.order_id) == order.id).order_by(col(Fill.exec_id))
            )
        ).all()
        pos = (await session.exec(select(Position).where(col(Position.symbol) == symbol))).one()
        events = [
            json.loads(row.payload)
            for row in (await session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))))
            if (json.loads(row.payload).get("order") or {}).get("client_order_id")
            == f"cid-{symbol}"
        ]
    return (
        (
            order.status,
            order.filled_qty,
            order.cum_exec_value,
            order.avg_fill_price,
            order.cum_fee,
            order.fees,
        ),
        [
            (
                f.exec_id.split("-", 1)[-1],
                f.qty,
                f.price,
                f.value,
                f.fee,
                f.fee_currency,
                f.fee_settled,
                f.inferred,
            )
            for f in fills
        ],
        (pos.size, pos.avg_entry_price, pos.realized_pnl, pos.fees_paid, pos.fees),
        events,
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(trade=trades(), data=st.data())
async def test_any_arrival_order_converges(
    sessions: SessionFactory, trade: Trade, data: st.DataObject
) -> None:
    applier = UpdateApplier(sessions, Instruments(_Rules()))
    n = next(_symbols)
    in_order, shuffled = f"I{n}X", f"S{n}X"
    opposite = data.draw(st.booleans(), label="seed against the trade")
    seeded = data.draw(st.booleans(), label="seeded")

    for symbol in (in_order, shuffled):
        if seeded:
            await run(applier, [seed(trade, symbol, opposite)])
    await run(applier, [[r] for r in story(trade, in_order)])

    reports = story(trade, shuffled)
    copies = data.draw(st.lists(st.integers(1, 3), min_size=len(reports), max_size=len(reports)))
    messy = [r for r, k in zip(reports, copies, strict=True) for _ in range(k)]
    messy = data.draw(st.permutations(messy), label="arrival order")
    # Cut into messages of one to four reports each.
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=len(messy), max_size=len(messy)))
    messages, i = [], 0
    for size in sizes:
        if i >= len(messy):
            break
        messages.append(messy[i : i + size])
        i += size
    await run(applier, messages)

    want_order, want_fills, want_pos, want_events = await final_state(sessions, in_order)
    got_order, got_fills, got_pos, got_events = await final_state(sessions, shuffled)
    assert got_order == want_order
    assert got_fills == want_fills
    assert not any(f[-1] for f in got_fills), "every inferred fill was replaced"
    assert got_pos == want_pos

    for events in (want_events, got_events):
        for event in events:
            validate_event(event)
        keys = [(e["event_type"], e["order"]["status"], e["order"]["filled_qty"]) for e in events]
        assert len(keys) == len(set(keys)), keys  # never the same change twice
        assert events[0]["event_type"] == "order.created"
