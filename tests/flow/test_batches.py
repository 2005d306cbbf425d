"""Work that arrives together is done together — with exactly the results of doing it one
message at a time. Both stacks; the batch entry points are called directly so every batch
here really is one transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import event as sa_event
from sqlmodel import col, select

from om_core.db.models import Fill, Order, SignalOrderRelationship
from om_core.db.types import utcnow
from om_core.engine.processor import Incoming
from om_core.messaging.base import Message
from om_core.signals.contract import parse_signal
from om_plugins import ExecutionReport, OrderReport
from tests.flow.reports import execution, message, order
from tests.flow.stack import Stack, running
from tests.flow.test_reverse_flow import events_for, position, resting_order


def incoming(data: dict[str, Any]) -> Incoming:
    return Incoming(parse_signal(data), data, utcnow())


def limit_buy(signal_id: str, symbol: str = "BTCUSDT") -> dict[str, Any]:
    return {
        "signal_id": signal_id,
        "symbol": symbol,
        "side": "buy",
        "qty": "0.010",
        "price": "50000",
    }


def partly_then_fully_filled(cid: str, oid: str) -> list[OrderReport | ExecutionReport]:
    """One 0.010 order at 50,000: an execution of 0.004 and its order report, then the rest."""
    return [
        execution(cid=cid, oid=oid, qty="0.004", price="50000", fee="0.04"),
        order(
            cid=cid,
            oid=oid,
            status="partially_filled",
            filled="0.004",
            value="200",
            fees={"USDT": "0.04"},
        ),
        execution(cid=cid, oid=oid, qty="0.006", price="50000", fee="0.06"),
        order(cid=cid, oid=oid, status="filled", filled="0.010", value="500", fees={"USDT": "0.1"}),
    ]


async def relationships(stack: Stack) -> list[SignalOrderRelationship]:
    async with stack.service.sessions() as session:
        return list((await session.exec(select(SignalOrderRelationship))).all())


async def test_each_decision_of_a_batch_sees_the_intents_before_it(
    urls: tuple[str, str],
) -> None:
    # 0.010 BTC at 50,000 = 500 USDT a signal; the limit of 800 fits exactly one per symbol.
    risk = {"max_position_notional": "800", "max_order_notional": "1000"}
    async with running(*urls, plugin_config={"risk": risk}, consume=False) as stack:
        batch = [incoming(limit_buy(f"b-{n}")) for n in range(4)]
        batch.append(incoming(limit_buy("e-0", symbol="ETHUSDT")))
        outcomes = await stack.service.processor.process_many(batch)
        assert [o.status for o in outcomes] == [
            "placed",
            "rejected",
            "rejected",
            "rejected",
            "placed",
        ]
        assert {r["code"] for o in outcomes[1:4] for r in o.reasons} == {"MAX_POSITION_NOTIONAL"}
        orders = await stack.orders()
        assert sorted(o.signal_id or "" for o in orders) == ["b-0", "e-0"]
        assert {(r.signal_id, r.order_id) for r in await relationships(stack)} == {
            (o.signal_id, o.id) for o in orders
        }
        assert sorted(stack.paper.create_calls) == sorted(o.client_order_id for o in orders)
        # Accepted together, each with its own exchange id.
        for o in orders:
            assert o.exchange_order_id == stack.paper.orders[o.client_order_id].order_id
        kinds = sorted(e["event_type"] for e in await stack.events(5))
        assert kinds == ["order.created"] * 2 + ["signal.rejected"] * 3
        for row in [await stack.signal_row(f"b-{n}") for n in range(4)]:
            assert row is not None and row.status in {"placed", "rejected"}


async def test_a_batch_with_repeated_and_known_signals_places_each_once(
    urls: tuple[str, str],
) -> None:
    async with running(*urls, consume=False) as stack:
        processor = stack.service.processor
        [first] = await processor.process_many([incoming(limit_buy("known"))])
        assert first.status == "placed" and not first.duplicate
        outcomes = await processor.process_many(
            [
                incoming(limit_buy("twice")),
                incoming(limit_buy("known")),
                incoming(limit_buy("twice")),
            ]
        )
        assert [(o.signal_id, o.status, o.duplicate) for o in outcomes] == [
            ("twice", "placed", False),
            ("known", "placed", True),
            ("twice", "placed", True),
        ]
        assert sorted(o.signal_id or "" for o in await stack.orders()) == ["known", "twice"]
        assert len(stack.paper.create_calls) == 2


async def test_reports_of_one_order_in_one_batch_apply_in_order(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        order = await resting_order(stack, "rb-1")
        cid, oid = order.client_order_id, order.exchange_order_id
        assert oid is not None
        story = partly_then_fully_filled(cid, oid)
        results = await stack.service.applier.apply_many([*story, story[-1], story[0]])
        assert [r.action for r in results] == [
            "applied",  # the first execution
            "ignored",  # its order report: nothing new
            "applied",
            "ignored",
            "ignored",  # the order report again
            "ignored",  # the first execution again
        ]
        assert [r.fill_qty for r in results[:3:2]] == [Decimal("0.004"), Decimal("0.006")]
        await stack.outbox_drained()
        assert await events_for(stack, cid) == [
            "order.created",
            "order.partially_filled",
            "order.filled",
        ]
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.010")
        assert pos.avg_entry_price == Decimal("50000")
        assert pos.fees_paid == Decimal("0.1")
        async with stack.service.sessions() as session:
            fills = (await session.exec(select(Fill).order_by(col(Fill.id)))).all()
        assert [f.qty for f in fills] == [Decimal("0.004"), Decimal("0.006")]


async def test_the_reports_of_one_message_apply_in_one_transaction(
    urls: tuple[str, str],
) -> None:
    # Bybit (and the paper exchange) push orders that changed together in one message.
    async with running(*urls) as stack:
        order = await resting_order(stack, "rb-2")
        cid, oid = order.client_order_id, order.exchange_order_id
        assert oid is not None
        body = Message(message(*partly_then_fully_filled(cid, oid)))
        engine = stack.service.db.sync_engine
        # The transactions that wrote fills (the relay may run its own meanwhile).
        writers: list[object] = []

        def watch(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO FILLS"):
                writers.append(conn.get_transaction())

        sa_event.listen(engine, "before_cursor_execute", watch)
        try:
            outcomes = await stack.service.event_subscriber.handle_batch([body])
        finally:
            sa_event.remove(engine, "before_cursor_execute", watch)
        assert outcomes == [None]
        assert len(writers) == 1
        async with stack.service.sessions() as session:
            fills = (await session.exec(select(Fill).order_by(col(Fill.id)))).all()
        assert [f.qty for f in fills] == [Decimal("0.004"), Decimal("0.006")]
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.010")


async def test_an_external_order_and_a_repeated_execution_in_one_batch_count_once(
    urls: tuple[str, str],
) -> None:
    fill = execution(cid="", oid="ext-1", qty="0.5", price="95900.1", side="sell", fee="26.4")
    async with running(*urls, consume=False) as stack:
        results = await stack.service.applier.apply_many([fill, fill])
        assert [r.action for r in results] == ["applied", "ignored"]
        assert results[0].external and not results[1].external
        async with stack.service.sessions() as session:
            orders = (await session.exec(select(Order))).all()
            fills = (await session.exec(select(Fill))).all()
        assert len(orders) == 1 and orders[0].is_external
        assert [f.exec_id for f in fills] == [fill.exec_id]
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("-0.5")
