"""Reconciliation: the exchange holds fills and orders the database missed, a position was
opened by hand and another drifted; a dry run reports it all, a real run fixes it and
publishes the events, and a second run finds nothing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, cast

from sqlmodel import col, select

from om_core.db.models import Fill, Order, Position
from om_core.messaging.topology import ORDER_UPDATES_QUEUE
from om_core.orders.client_id import client_order_id
from om_core.reconcile.reconciler import Reconciler
from om_plugins import Category, OrderRequest, OrderType, Side
from om_plugins.exchange import ExchangeAdapter
from om_plugins.reports import PositionReport
from plugins_builtin.paper.exchange import PaperExchange
from tests.flow.reports import gap
from tests.flow.stack import running


async def test_reconciliation_finds_and_fixes_every_drift(urls: tuple[str, str]) -> None:
    async with running(*urls, consume=False) as stack:
        service = stack.service
        # A signal placed while the order stream is not being consumed: the fill is missed.
        body = json.dumps(
            {"signal_id": "rc-1", "symbol": "BTCUSDT", "side": "buy", "qty": "0.010"}
        ).encode()
        assert (await service.signal_consumer.process_bytes(body)).status == "placed"
        cid = client_order_id("rc-1", 0)
        # An order placed by hand on the exchange.
        await stack.paper.place_order(
            OrderRequest(
                client_order_id="by-hand-1",
                symbol="ETHUSDT",
                category=Category.LINEAR,
                side=Side.BUY,
                order_type=OrderType.LIMIT,
                qty=Decimal("0.10"),
                price=Decimal("2000"),
            )
        )
        # A position opened by hand: a market order that filled at once, never streamed.
        await stack.paper.place_order(
            OrderRequest(
                client_order_id="by-hand-2",
                symbol="ETHUSDT",
                category=Category.LINEAR,
                side=Side.SELL,
                order_type=OrderType.MARKET,
                qty=Decimal("0.50"),
            )
        )
        # A position we believe in that the exchange does not have.
        async with service.sessions() as session, session.begin():
            session.add(
                Position(
                    category="linear",
                    symbol="SOLUSDT",
                    size=Decimal(3),
                    avg_entry_price=Decimal(150),
                )
            )

        dry = await service.reconciler.run(dry_run=True)
        assert dry.dry_run
        assert (dry.orders_checked, dry.orders_updated, dry.orders_imported) == (1, 1, 1)
        # A dry run compares positions as the database stands now, before the order fixes
        # it would apply: BTC (the missed fill), ETH (by hand) and SOL all differ.
        assert dry.positions_corrected == 3, dry.drifts
        kinds = sorted((d.kind, d.key) for d in dry.drifts)
        assert kinds == [
            ("external_order", stack.paper.orders["by-hand-1"].order_id),
            ("order", cid),
            ("position", "linear:BTCUSDT:0"),
            ("position", "linear:ETHUSDT:0"),
            ("position", "linear:SOLUSDT:0"),
        ]
        order_drift = next(d for d in dry.drifts if d.kind == "order")
        assert order_drift.before["status"] == "submitted"
        assert order_drift.after == {"status": "filled", "filled_qty": "0.01"}
        # Nothing changed.
        async with service.sessions() as session:
            order = (
                await session.exec(select(Order).where(col(Order.client_order_id) == cid))
            ).one()
            assert order.status == "submitted"
            assert len((await session.exec(select(Order))).all()) == 1
        await stack.outbox_drained()
        before = [e["event_type"] for e in await stack.all_events()]
        assert before == ["order.created"]

        fixed = await service.reconciler.run()
        assert (fixed.orders_updated, fixed.orders_imported, fixed.positions_corrected) == (1, 1, 2)
        # The order's fill was inferred from its order report; its execution was then fetched.
        assert fixed.fills_fetched == 1
        placed = await stack.order_status(cid, "filled")
        async with service.sessions() as session:
            positions = {p.symbol: p for p in (await session.exec(select(Position))).all()}
            [fill] = (await session.exec(select(Fill).where(col(Fill.order_id) == placed.id))).all()
        assert not fill.inferred
        assert fill.exec_id == stack.paper.orders[cid].executions[0].exec_id
        assert positions["BTCUSDT"].size == Decimal("0.010")
        assert positions["ETHUSDT"].size == Decimal("-0.50")
        assert (
            positions["ETHUSDT"].avg_entry_price == stack.paper.position("ETHUSDT").avg_entry_price
        )
        assert positions["SOLUSDT"].size == 0
        events = await stack.all_events()
        assert sorted(e["event_type"] for e in events) == [
            "order.created",
            "order.filled",
            "position.corrected",
            "position.corrected",
        ]
        filled = next(e for e in events if e["event_type"] == "order.filled")
        assert filled["fill"]["qty"] == "0.01"
        corrected = {
            e["position"]["symbol"]: e for e in events if e["event_type"] == "position.corrected"
        }
        assert corrected["ETHUSDT"]["correction"]["before"] == {
            "size": "0",
            "avg_entry_price": "0",
        }
        assert corrected["ETHUSDT"]["correction"]["after"]["size"] == "-0.5"
        assert corrected["SOLUSDT"]["position"]["size"] == "0"

        again = await service.reconciler.run()
        assert again.drifts == [] and again.errors == []
        assert await stack.all_events() == []


async def test_a_gateway_reconnect_triggers_reconciliation(urls: tuple[str, str]) -> None:
    async with running(*urls, consume=False) as stack:
        service = stack.service
        body = json.dumps(
            {"signal_id": "gap-1", "symbol": "BTCUSDT", "side": "sell", "qty": "0.020"}
        ).encode()
        assert (await service.signal_consumer.process_bytes(body)).status == "placed"
        cid = client_order_id("gap-1", 0)
        # The fill happened while the stream was down; the stream says it reconnected.
        assert await service.event_subscriber.process_bytes(gap()) == []
        order = await stack.order_status(cid, "filled")
        assert order.filled_qty == Decimal("0.020")
        async with service.sessions() as session:
            pos = (await session.exec(select(Position))).one()
        assert pos.size == Decimal("-0.020")


async def test_fills_a_correction_holds_already_are_not_counted_again(
    urls: tuple[str, str],
) -> None:
    """Reconciliation set a position from the exchange's figures, and then the fill that
    made them arrives late through the stream: it is booked, and moves the position's size
    no more (its fee still counts)."""
    async with running(*urls, consume=False) as stack:
        service = stack.service
        await stack.paper.place_order(
            OrderRequest(
                client_order_id="by-hand-late",
                symbol="ETHUSDT",
                category=Category.LINEAR,
                side=Side.SELL,
                order_type=OrderType.MARKET,
                qty=Decimal("0.50"),
            )
        )
        report = await service.reconciler.run()
        assert report.positions_corrected == 1
        late = []
        while (message := await service.bus.get(ORDER_UPDATES_QUEUE, timeout=0.2)) is not None:
            late.append(message.body)
        assert late  # what the stream would have delivered, had it been consumed
        for body in late:
            await service.event_subscriber.process_bytes(body)
        async with service.sessions() as session:
            [pos] = (await session.exec(select(Position))).all()
            [order] = (await session.exec(select(Order))).all()
            [fill] = (await session.exec(select(Fill))).all()
        assert pos.size == Decimal("-0.50")
        assert order.is_external and order.status == "filled"
        assert fill.qty == Decimal("0.50") and not fill.sized
        # Its fee is not in the exchange's position figures: that still counts.
        assert pos.fees_paid == fill.fee_settled > 0


class _ListsEarlier:
    """The exchange answering a position listing with figures taken before its latest fill:
    the listing raced a fill the stream has delivered since."""

    def __init__(self, exchange: PaperExchange, listing: list[PositionReport]) -> None:
        self._exchange = exchange
        self._listing = listing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._exchange, name)

    async def list_positions(self, category: Category) -> list[PositionReport]:
        return [p for p in self._listing if p.category is category]


async def test_a_listing_older_than_the_book_does_not_undo_a_fill(urls: tuple[str, str]) -> None:
    async with running(*urls, consume=False) as stack:
        service = stack.service

        async def trade(sid: str, side: str) -> None:
            body = json.dumps(
                {"signal_id": sid, "symbol": "ETHUSDT", "side": side, "qty": "0.50"}
            ).encode()
            assert (await service.signal_consumer.process_bytes(body)).status == "placed"
            while (message := await service.bus.get(ORDER_UPDATES_QUEUE, timeout=0.2)) is not None:
                await service.event_subscriber.process_bytes(message.body)

        await trade("race-open", "buy")
        before_close = await stack.paper.list_positions(Category.LINEAR)
        assert [p.size for p in before_close] == [Decimal("0.50")]
        await trade("race-close", "sell")
        async with service.sessions() as session:
            [pos] = (await session.exec(select(Position))).all()
        assert pos.size == 0

        stale = Reconciler(
            service.sessions,
            cast(ExchangeAdapter, _ListsEarlier(stack.paper, before_close)),
            service.applier,
            service.executor,
            categories=(Category.LINEAR,),
        )
        report = await stale.run()
        assert (report.positions_corrected, report.positions_deferred) == (0, 1), report.drifts
        async with service.sessions() as session:
            [pos] = (await session.exec(select(Position))).all()
        assert pos.size == 0
        # With the exchange's figures current again, there is nothing to correct.
        report = await service.reconciler.run()
        assert report.drifts == [] and report.positions_deferred == 0
