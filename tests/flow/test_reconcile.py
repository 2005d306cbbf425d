"""Reconciliation: the exchange holds fills and orders the database missed, and a position
drifted; a dry run reports it all, a real run fixes it and publishes the events, and a second
run finds nothing."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlmodel import col, select

from om_core.db.models import Order, Position
from om_core.orders.client_id import client_order_id
from om_plugins import Category, OrderRequest, OrderType, Side
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
        # it would apply: BTC (the missed fill) and SOL both differ.
        assert dry.positions_corrected == 2, dry.drifts
        kinds = sorted((d.kind, d.key) for d in dry.drifts)
        assert kinds == [
            ("external_order", stack.paper.orders["by-hand-1"].order_id),
            ("order", cid),
            ("position", "linear:BTCUSDT:0"),
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
        assert (fixed.orders_updated, fixed.orders_imported, fixed.positions_corrected) == (1, 1, 1)
        await stack.order_status(cid, "filled")
        async with service.sessions() as session:
            positions = {p.symbol: p for p in (await session.exec(select(Position))).all()}
        assert positions["BTCUSDT"].size == Decimal("0.010")
        assert positions["SOLUSDT"].size == 0
        events = await stack.all_events()
        assert sorted(e["event_type"] for e in events) == ["order.created", "order.filled"]
        filled = next(e for e in events if e["event_type"] == "order.filled")
        assert filled["fill"]["qty"] == "0.01"

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
        # The fill happened while the stream was down; the gateway says it reconnected.
        control = {"source": "ws-gateway", "type": "gateway.reconnected", "account": "main"}
        assert await service.event_subscriber.process_bytes(json.dumps(control).encode()) == []
        order = await stack.order_status(cid, "filled")
        assert order.filled_qty == Decimal("0.020")
        async with service.sessions() as session:
            pos = (await session.exec(select(Position))).one()
        assert pos.size == Decimal("-0.020")
