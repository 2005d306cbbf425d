"""Exchange reports → order state → fills → positions → events, through the real queue.

Runs on SQLite + in-process bus and on PostgreSQL + RabbitMQ. Orders of our own are placed
through a signal (a resting limit on the paper exchange), then driven by Bybit-shaped
reports published to ``ws-gateway.order`` exactly as the WS-Gateway would.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlmodel import col, select

from om_core.db.models import Fill, Order, Position, PositionSnapshot, QuarantinedUpdate
from om_core.messaging.base import ERROR_HEADER, dlq_name
from om_core.messaging.topology import ORDER_UPDATES_QUEUE
from om_core.orders.client_id import client_order_id
from tests.conftest import wait_for
from tests.flow.bybit_messages import T0, enveloped, example, order_object, stream
from tests.flow.stack import Stack, running


async def publish_update(stack: Stack, message: dict[str, Any] | bytes) -> None:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    await stack.service.bus.publish(ORDER_UPDATES_QUEUE, body)


async def resting_order(stack: Stack, signal_id: str, **fields: Any) -> Order:
    """Place a limit buy far below the market: it rests, so the test drives its fate."""
    signal = {
        "signal_id": signal_id,
        "symbol": "BTCUSDT",
        "side": "buy",
        "qty": "0.010",
        "price": "50000",
        **fields,
    }
    await stack.publish(signal)
    assert (await stack.outcome(signal_id)).status == "placed"
    return await stack.order_status(client_order_id(signal_id, 0), "new")


async def position(stack: Stack, symbol: str = "BTCUSDT", idx: int = 0) -> Position | None:
    async with stack.service.sessions() as session:
        return (
            await session.exec(
                select(Position).where(
                    col(Position.symbol) == symbol, col(Position.position_idx) == idx
                )
            )
        ).first()


async def events_for(stack: Stack, client_id: str) -> list[str]:
    return [
        e["event_type"]
        for e in await stack.all_events()
        if e.get("order") and e["order"]["client_order_id"] == client_id
    ]


async def test_new_partial_filled_moves_order_position_and_events(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        order = await resting_order(stack, "rf-1")
        cid, oid = order.client_order_id, order.exchange_order_id
        assert oid is not None
        await publish_update(
            stack,
            stream(
                order_object(
                    link_id=cid,
                    order_id=oid,
                    status="PartiallyFilled",
                    cum_qty="0.004",
                    cum_value="200",
                    cum_fee="0.04",
                )
            ),
        )
        await stack.order_status(cid, "partially_filled")  # consumers run concurrently
        await publish_update(
            stack,
            stream(
                order_object(
                    link_id=cid,
                    order_id=oid,
                    status="Filled",
                    cum_qty="0.010",
                    cum_value="499.99",
                    cum_fee="0.1",
                )
            ),
        )
        done = await stack.order_status(cid, "filled")
        assert done.filled_qty == Decimal("0.010")
        assert done.cum_exec_value == Decimal("499.99")
        assert done.cum_fee == Decimal("0.1")
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.010")
        assert pos.avg_entry_price == Decimal("49999")
        assert pos.fees_paid == Decimal("0.1")
        events = [e for e in await stack.all_events() if e.get("order")]
        kinds = [e["event_type"] for e in events]
        assert kinds == ["order.created", "order.partially_filled", "order.filled"]
        partial, filled = events[1], events[2]
        assert partial["fill"] == {"qty": "0.004", "price": "50000", "fee": "0.04"}
        assert filled["fill"] == {
            "qty": "0.006",
            "price": "49998.333333333333333333",
            "fee": "0.06",
        }
        assert filled["position"]["size"] == "0.01"
        async with stack.service.sessions() as session:
            fills = (await session.exec(select(Fill))).all()
            snaps = (await session.exec(select(PositionSnapshot))).all()
        assert sum(f.qty for f in fills) == Decimal("0.010")
        assert [s.reason for s in snaps] == ["fill", "fill"]


async def test_duplicates_and_reordering_change_nothing(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        order = await resting_order(stack, "rf-dup")
        cid, oid = order.client_order_id, order.exchange_order_id
        assert oid is not None
        partial = order_object(
            link_id=cid,
            order_id=oid,
            status="PartiallyFilled",
            cum_qty="0.004",
            cum_value="200",
            cum_fee="0.04",
            updated_ms=T0 + 2000,
        )
        filled = order_object(
            link_id=cid,
            order_id=oid,
            status="Filled",
            cum_qty="0.010",
            cum_value="500",
            cum_fee="0.1",
            updated_ms=T0 + 3000,
        )
        new = order_object(link_id=cid, order_id=oid, status="New", updated_ms=T0 + 1000)
        for message in (filled, partial, filled, new, partial, filled):
            await publish_update(stack, stream(message))
        await stack.order_status(cid, "filled")
        await publish_update(stack, stream(new))  # sentinel processed after the rest
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.010")
        # Handlers run concurrently, so the partial may or may not be applied before the
        # fill; either way no change is published twice and the story ends filled.
        kinds = await events_for(stack, cid)
        assert kinds in (
            ["order.created", "order.filled"],
            ["order.created", "order.partially_filled", "order.filled"],
        )


async def test_partial_then_cancel(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        order = await resting_order(stack, "rf-cancel")
        cid, oid = order.client_order_id, order.exchange_order_id
        assert oid is not None
        await publish_update(
            stack,
            stream(
                order_object(
                    link_id=cid,
                    order_id=oid,
                    status="PartiallyFilled",
                    cum_qty="0.003",
                    cum_value="150",
                    cum_fee="0.03",
                )
            ),
        )
        await stack.order_status(cid, "partially_filled")  # consumers run concurrently
        await publish_update(
            stack,
            stream(
                order_object(
                    link_id=cid,
                    order_id=oid,
                    status="Cancelled",
                    cum_qty="0.003",
                    cum_value="150",
                    cum_fee="0.03",
                )
            ),
        )
        done = await stack.order_status(cid, "partially_filled_cancelled")
        assert done.filled_qty == Decimal("0.003")
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.003")
        kinds = await events_for(stack, cid)
        assert kinds == ["order.created", "order.partially_filled", "order.cancelled"]


async def test_fill_reported_after_cancel_is_taken(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        order = await resting_order(stack, "rf-late")
        cid, oid = order.client_order_id, order.exchange_order_id
        assert oid is not None
        await publish_update(
            stack,
            stream(
                order_object(link_id=cid, order_id=oid, status="Cancelled", updated_ms=T0 + 5000)
            ),
        )
        await stack.order_status(cid, "cancelled")
        await publish_update(
            stack,
            stream(
                order_object(
                    link_id=cid,
                    order_id=oid,
                    status="Filled",
                    cum_qty="0.010",
                    cum_value="500",
                    cum_fee="0.1",
                    updated_ms=T0 + 5001,
                )
            ),
        )
        await stack.order_status(cid, "filled")
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.010")
        kinds = await events_for(stack, cid)
        assert kinds == ["order.created", "order.cancelled", "order.filled"]


async def test_rejected_by_the_exchange_after_acceptance(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        order = await resting_order(stack, "rf-rej")
        cid, oid = order.client_order_id, order.exchange_order_id
        assert oid is not None
        await publish_update(
            stack,
            stream(
                order_object(
                    link_id=cid,
                    order_id=oid,
                    status="Rejected",
                    reject_reason="EC_PostOnlyWillTakeLiquidity",
                )
            ),
        )
        done = await stack.order_status(cid, "rejected")
        assert done.reject_reason == "EC_PostOnlyWillTakeLiquidity"
        kinds = await events_for(stack, cid)
        assert kinds == ["order.created", "order.rejected"]


async def test_an_impossible_transition_is_quarantined_not_applied(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        order = await resting_order(stack, "rf-q")
        cid, oid = order.client_order_id, order.exchange_order_id
        assert oid is not None
        await publish_update(
            stack,
            stream(
                order_object(link_id=cid, order_id=oid, status="Rejected", updated_ms=T0 + 7000)
            ),
        )
        await stack.order_status(cid, "rejected")
        await publish_update(
            stack,
            stream(order_object(link_id=cid, order_id=oid, status="New", updated_ms=T0 + 8000)),
        )

        async def quarantined() -> list[QuarantinedUpdate]:
            async with stack.service.sessions() as session:
                return list((await session.exec(select(QuarantinedUpdate))).all())

        [row] = await wait_for(quarantined, message="quarantined report")
        assert "rejected order cannot become new" in row.reason
        assert row.payload["orderStatus"] == "New"
        assert (await stack.order_status(cid, "rejected")).status == "rejected"


async def test_bybit_documented_order_message_from_an_external_order(
    urls: tuple[str, str],
) -> None:
    message = example("docs_ws_order_stream_message.json")
    async with running(*urls) as stack:
        await publish_update(stack, message)
        await publish_update(stack, message)  # duplicated delivery
        pos = await wait_for(lambda: position(stack, "ETH-30DEC22-1400-C"), message="position")
        assert pos.size == Decimal(-1) and pos.avg_entry_price == Decimal(75)
        assert pos.fees_paid == Decimal("0.358635")
        async with stack.service.sessions() as session:
            [order] = (await session.exec(select(Order).where(col(Order.is_external)))).all()
        assert order.signal_id is None and order.status == "filled"
        assert order.exchange_order_id == "5cf98598-39a7-459e-97bf-76ca765ee020"
        kinds = [e["event_type"] for e in await stack.all_events()]
        assert kinds == ["order.created", "order.filled"]


async def test_bybit_documented_execution_message_and_its_order_count_once(
    urls: tuple[str, str],
) -> None:
    execution = example("docs_ws_execution_stream_message.json")
    fill = execution["data"][0]
    report = order_object(
        link_id="",
        order_id=fill["orderId"],
        status="Filled",
        side="Sell",
        qty="0.5",
        cum_qty="0.5",
        cum_value="47950.05",
        cum_fee="26.3725275",
        order_type="Market",
        price="94942.5",
    )
    async with running(*urls) as stack:
        await publish_update(stack, enveloped(execution))
        await publish_update(stack, execution)  # same execId again
        await publish_update(stack, stream(report))  # the order topic says the same fill
        await publish_update(stack, report)  # a bare order object is accepted too
        await stack.outbox_drained()

        async def settled() -> Order | None:
            async with stack.service.sessions() as session:
                o = (await session.exec(select(Order).where(col(Order.is_external)))).first()
            return o if o is not None and o.status == "filled" else None

        await wait_for(settled, message="external order filled")
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("-0.5")
        assert pos.avg_entry_price == Decimal("95900.1")
        async with stack.service.sessions() as session:
            fills = (await session.exec(select(Fill))).all()
        assert [f.exec_id for f in fills] == [fill["execId"]]


BAD_UPDATES = [
    (b"nope", "not valid JSON"),
    (b'{"topic": "wallet", "data": []}', "unsupported topic"),
    (b'{"topic": "order", "data": [{"orderId": "x", "orderStatus": "New"}]}', "symbol is required"),
    (
        b'{"topic": "order", "data": [{"orderId": "x", "symbol": "BTCUSDT", "side": "Buy",'
        b' "orderStatus": "New", "qty": "abc"}]}',
        "qty is not a number",
    ),
]


async def test_malformed_updates_are_dead_lettered_and_the_next_is_applied(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        order = await resting_order(stack, "rf-bad")
        for body, _ in BAD_UPDATES:
            await publish_update(stack, body)
        assert order.exchange_order_id is not None
        await publish_update(
            stack,
            stream(
                order_object(
                    link_id=order.client_order_id,
                    order_id=order.exchange_order_id,
                    status="Cancelled",
                )
            ),
        )
        await stack.order_status(order.client_order_id, "cancelled")
        dead = [await stack.next_message(dlq_name(ORDER_UPDATES_QUEUE)) for _ in BAD_UPDATES]
        by_body = {m.body: m for m in dead}
        for body, reason in BAD_UPDATES:
            assert reason in by_body[body].headers[ERROR_HEADER]


async def test_a_report_that_beats_the_rest_answer_finds_the_intent(
    urls: tuple[str, str],
) -> None:
    """The stream reports the fill before placement's answer is committed: the intent row
    (committed before the call) is found, and order.created is still published once."""
    stack_ref: list[Stack] = []

    async def hold_commit_until_filled(client_id: str) -> None:
        await stack_ref[0].order_status(client_id, "filled")

    async with running(*urls, before_commit=hold_commit_until_filled) as stack:
        stack_ref.append(stack)
        await stack.publish(
            {"signal_id": "race", "symbol": "BTCUSDT", "side": "buy", "qty": "0.010"}
        )
        assert (await stack.outcome("race")).status == "placed"
        cid = client_order_id("race", 0)
        order = await stack.order_status(cid, "filled")
        assert order.exchange_order_id == stack.paper.orders[cid].order_id
        assert await events_for(stack, cid) == ["order.created", "order.filled"]


async def test_periodic_snapshots_record_mark_and_unrealized_pnl(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        await stack.publish(
            {"signal_id": "snap", "symbol": "BTCUSDT", "side": "buy", "qty": "0.010"}
        )
        await stack.order_status(client_order_id("snap", 0), "filled")
        await stack.paper.set_price("BTCUSDT", Decimal("61000"))
        assert await stack.service.snapshots.take() == 1
        async with stack.service.sessions() as session:
            snaps = (
                await session.exec(select(PositionSnapshot).order_by(col(PositionSnapshot.id)))
            ).all()
        periodic = snaps[-1]
        assert periodic.reason == "periodic" and periodic.mark_price == Decimal(61000)
        assert periodic.unrealized_pnl == (Decimal(61000) - periodic.avg_entry_price) * Decimal(
            "0.010"
        )


async def test_hedge_mode_keeps_one_position_per_side(urls: tuple[str, str]) -> None:
    long_open = order_object(
        link_id="",
        order_id="h-1",
        status="Filled",
        side="Buy",
        qty="2",
        cum_qty="2",
        cum_value="200",
        cum_fee="0.1",
        position_idx=1,
        order_type="Market",
    )
    short_open = order_object(
        link_id="",
        order_id="h-2",
        status="Filled",
        side="Sell",
        qty="1",
        cum_qty="1",
        cum_value="105",
        cum_fee="0.05",
        position_idx=2,
        order_type="Market",
    )
    long_close = order_object(
        link_id="",
        order_id="h-3",
        status="Filled",
        side="Sell",
        qty="0.5",
        cum_qty="0.5",
        cum_value="55",
        cum_fee="0.02",
        position_idx=1,
        order_type="Market",
    )
    async with running(*urls) as stack:
        for message in (long_open, short_open, long_close):
            await publish_update(stack, stream(message))
        await wait_for(lambda: position(stack, "BTCUSDT", 1), message="long side")

        async def settled() -> tuple[Position, Position] | None:
            long_side, short_side = await position(stack, idx=1), await position(stack, idx=2)
            if long_side is None or short_side is None or long_side.size != Decimal("1.5"):
                return None
            return long_side, short_side

        long_side, short_side = await wait_for(settled, message="both sides")
        assert (long_side.avg_entry_price, long_side.realized_pnl) == (Decimal(100), Decimal(5))
        assert (short_side.size, short_side.avg_entry_price) == (Decimal(-1), Decimal(105))
        assert long_side.fees_paid == Decimal("0.12")
