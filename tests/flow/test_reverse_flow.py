"""Exchange reports → order state → fills → positions → events, through the real queue.

Runs on SQLite + in-process bus and on PostgreSQL + RabbitMQ. Orders of our own are placed
through a signal (a resting limit on the paper exchange), then driven by reports published to
``ws-gateway.order`` in the neutral form the paper exchange itself publishes (Bybit's own
messages, decoded by the Bybit plugin, are exercised in ``tests/bybit``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlmodel import col, select

from om_core.db.models import Fill, Order, Position, PositionSnapshot, QuarantinedUpdate
from om_core.messaging.base import ERROR_HEADER, dlq_name
from om_core.messaging.topology import ORDER_UPDATES_QUEUE
from om_core.orders.client_id import client_order_id
from om_plugins import ExchangeReason
from tests.conftest import wait_for
from tests.flow.reports import T0, execution, message, order
from tests.flow.stack import Stack, running


async def publish_update(stack: Stack, body: bytes) -> None:
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


async def fills_of(stack: Stack, order_id: int | None = None) -> list[Fill]:
    async with stack.service.sessions() as session:
        query = select(Fill).order_by(col(Fill.id))
        if order_id is not None:
            query = query.where(col(Fill.order_id) == order_id)
        return list((await session.exec(query)).all())


async def test_order_reports_alone_infer_fills_and_move_the_position(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-1")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        partial = order(
            cid=cid,
            oid=oid,
            status="partially_filled",
            filled="0.004",
            value="200",
            fees={"USDT": "0.04"},
        )
        await publish_update(stack, message(partial))
        await stack.order_status(cid, "partially_filled")  # consumers run concurrently
        filled = order(
            cid=cid,
            oid=oid,
            status="filled",
            filled="0.010",
            value="499.99",
            fees={"USDT": "0.1"},
        )
        await publish_update(stack, message(filled))
        done = await stack.order_status(cid, "filled")
        assert done.filled_qty == Decimal("0.010")
        assert done.cum_exec_value == Decimal("499.99")
        assert done.cum_fee == Decimal("0.1") and done.fees == {"USDT": "0.1"}
        assert done.avg_fill_price == Decimal("49999")
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.010")
        assert pos.avg_entry_price == Decimal("49999")
        assert pos.fees_paid == Decimal("0.1") and pos.fees == {"USDT": "0.1"}
        events = [e for e in await stack.all_events() if e.get("order")]
        kinds = [e["event_type"] for e in events]
        assert kinds == ["order.created", "order.partially_filled", "order.filled"]
        partial_event, filled_event = events[1], events[2]
        assert partial_event["fill"]["qty"] == "0.004"
        assert partial_event["fill"]["inferred"] is True
        assert filled_event["fill"]["qty"] == "0.006"
        assert filled_event["fill"]["price"] == "49998.333333333333333333"
        assert filled_event["position"]["size"] == "0.01"
        # One inferred fill per order holds what no execution has explained yet.
        [inferred] = await fills_of(stack, done.id)
        assert inferred.inferred and inferred.qty == Decimal("0.010")
        assert inferred.exec_id == f"inferred:{done.id}"
        async with stack.service.sessions() as session:
            snaps = (await session.exec(select(PositionSnapshot))).all()
        assert [s.reason for s in snaps] == ["fill", "fill"]


async def test_executions_book_fills_and_their_order_report_adds_nothing(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-exec")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        first = execution(cid=cid, oid=oid, qty="0.004", price="49990", fee="0.02", is_maker=True)
        second = execution(cid=cid, oid=oid, qty="0.006", price="50000", fee="0.03")
        report = order(
            cid=cid,
            oid=oid,
            status="filled",
            filled="0.010",
            value="499.96",
            fees={"USDT": "0.05"},
        )
        await publish_update(stack, message(first, second, report))
        await publish_update(stack, message(first, report))  # redelivered
        done = await stack.order_status(cid, "filled")
        fills = await fills_of(stack, done.id)
        assert [(f.exec_id, f.qty, f.inferred) for f in fills] == [
            (first.exec_id, Decimal("0.004"), False),
            (second.exec_id, Decimal("0.006"), False),
        ]
        assert fills[0].is_maker is True and fills[0].fee_currency == "USDT"
        assert done.avg_fill_price == Decimal("49996")
        pos = await position(stack)
        assert pos is not None and (pos.size, pos.avg_entry_price) == (
            Decimal("0.010"),
            Decimal("49996"),
        )
        assert pos.fees_paid == Decimal("0.05")
        kinds = await events_for(stack, cid)
        assert kinds == ["order.created", "order.partially_filled", "order.filled"]


async def test_maker_rebates_are_normal_negative_fees(urls: tuple[str, str]) -> None:
    """Observation 13.1: a negative fee is a rebate, not a malformed message."""
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-rebate")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        fill = execution(cid=cid, oid=oid, qty="0.010", price="50000", fee="-0.05", is_maker=True)
        report = order(
            cid=cid,
            oid=oid,
            status="filled",
            filled="0.010",
            value="500",
            fees={"USDT": "-0.05"},
        )
        await publish_update(stack, message(fill, report))
        done = await stack.order_status(cid, "filled")
        assert done.cum_fee == Decimal("-0.05")
        pos = await position(stack)
        assert pos is not None and pos.fees_paid == Decimal("-0.05")
        [row] = await fills_of(stack, done.id)
        assert row.fee == Decimal("-0.05")
        dead = await stack.service.bus.get(dlq_name(ORDER_UPDATES_QUEUE), timeout=0.2)
        assert dead is None


async def test_executions_newest_first_give_the_true_average(urls: tuple[str, str]) -> None:
    """Observation 13.2: 1 @ 1090 arriving before 1 @ 1010: both booked at their own price,
    entry 1050; the order report that follows carries the exchange's cumulative value, which
    is the order's average."""
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-ooo", qty="2", price="1100")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        early = execution(cid=cid, oid=oid, qty="1", price="1010", executed_ms=T0 + 1)
        late = execution(cid=cid, oid=oid, qty="1", price="1090", executed_ms=T0 + 2)
        # The exchange's own figure (it rounds differently, say): it decides the average.
        report = order(
            cid=cid, oid=oid, status="filled", qty="2", filled="2", value="2100.02", price="1100"
        )
        await publish_update(stack, message(late))
        await stack.order_status(cid, "partially_filled")
        pos = await position(stack)
        assert pos is not None and (pos.size, pos.avg_entry_price) == (1, 1090)
        await publish_update(stack, message(early))
        done = await stack.order_status(cid, "filled")
        assert done.avg_fill_price == Decimal("1050")
        pos = await position(stack)
        assert pos is not None and (pos.size, pos.avg_entry_price) == (2, 1050)
        await publish_update(stack, message(report))

        async def exchange_average() -> Order | None:
            row = await stack.order_status(cid, "filled")
            return row if row.avg_fill_price == Decimal("1050.01") else None

        await wait_for(exchange_average, message="the exchange's cumulative value adopted")
        prices = sorted(f.price for f in await fills_of(stack, done.id))
        assert prices == [Decimal("1010"), Decimal("1090")]
        pos = await position(stack)
        assert pos is not None and pos.avg_entry_price == Decimal("1050")


async def test_executions_after_the_order_report_replace_its_inferred_fill(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-replace", qty="2", price="1100")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        report = order(
            cid=cid,
            oid=oid,
            status="filled",
            qty="2",
            filled="2",
            value="2100",
            price="1100",
            fees={"USDT": "2.1"},
        )
        await publish_update(stack, message(report))
        done = await stack.order_status(cid, "filled")
        [inferred] = await fills_of(stack, done.id)
        assert inferred.inferred and inferred.qty == 2
        first = execution(cid=cid, oid=oid, qty="1", price="1090", fee="1.09")
        second = execution(cid=cid, oid=oid, qty="1", price="1010", fee="1.01")
        await publish_update(stack, message(first))
        await publish_update(stack, message(second))

        async def replaced() -> list[Fill] | None:
            fills = await fills_of(stack, done.id)
            return fills if all(not f.inferred for f in fills) else None

        fills = await wait_for(replaced, message="inferred fill replaced")
        assert sorted((f.qty, f.price) for f in fills) == [
            (Decimal(1), Decimal(1010)),
            (Decimal(1), Decimal(1090)),
        ]
        pos = await position(stack)
        assert pos is not None
        assert (pos.size, pos.avg_entry_price, pos.fees_paid) == (2, 1050, Decimal("2.1"))
        # The replacement changed no quantity: nothing new to tell.
        kinds = await events_for(stack, cid)
        assert kinds == ["order.created", "order.filled"]


async def test_duplicates_and_reordering_change_nothing(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-dup")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        partial = order(
            cid=cid,
            oid=oid,
            status="partially_filled",
            filled="0.004",
            value="200",
            fees={"USDT": "0.04"},
            updated_ms=T0 + 2000,
        )
        filled = order(
            cid=cid,
            oid=oid,
            status="filled",
            filled="0.010",
            value="500",
            fees={"USDT": "0.1"},
            updated_ms=T0 + 3000,
        )
        new = order(cid=cid, oid=oid, status="new", updated_ms=T0 + 1000)
        for report in (filled, partial, filled, new, partial, filled):
            await publish_update(stack, message(report))
        await stack.order_status(cid, "filled")
        await publish_update(stack, message(new))  # sentinel processed after the rest
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.010")
        # Handlers run concurrently, so the partial may or may not be applied before the
        # fill; either way no change is published twice and the story ends filled.
        kinds = await events_for(stack, cid)
        assert kinds in (
            ["order.created", "order.filled"],
            ["order.created", "order.partially_filled", "order.filled"],
        )


async def test_partial_then_cancel_carries_the_exchange_reason(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-cancel")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        partial = order(
            cid=cid,
            oid=oid,
            status="partially_filled",
            filled="0.003",
            value="150",
            fees={"USDT": "0.03"},
        )
        await publish_update(stack, message(partial))
        await stack.order_status(cid, "partially_filled")  # consumers run concurrently
        cancel = order(
            cid=cid,
            oid=oid,
            status="cancelled",
            filled="0.003",
            value="150",
            fees={"USDT": "0.03"},
            reason=ExchangeReason("CANCELLED_BY_USER", "CancelByUser", "cancelled by user"),
        )
        await publish_update(stack, message(cancel))
        done = await stack.order_status(cid, "partially_filled_cancelled")
        assert done.filled_qty == Decimal("0.003")
        assert (done.reject_code, done.exchange_code) == ("CANCELLED_BY_USER", "CancelByUser")
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.003")
        events = [e for e in await stack.all_events() if e.get("order")]
        assert [e["event_type"] for e in events] == [
            "order.created",
            "order.partially_filled",
            "order.cancelled",
        ]
        assert events[-1]["order"]["reject_code"] == "CANCELLED_BY_USER"
        assert events[-1]["order"]["exchange_code"] == "CancelByUser"


async def test_fill_reported_after_cancel_is_taken(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-late")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        await publish_update(
            stack, message(order(cid=cid, oid=oid, status="cancelled", updated_ms=T0 + 5000))
        )
        await stack.order_status(cid, "cancelled")
        late = order(
            cid=cid,
            oid=oid,
            status="filled",
            filled="0.010",
            value="500",
            fees={"USDT": "0.1"},
            updated_ms=T0 + 5001,
        )
        await publish_update(stack, message(late))
        await stack.order_status(cid, "filled")
        pos = await position(stack)
        assert pos is not None and pos.size == Decimal("0.010")
        kinds = await events_for(stack, cid)
        assert kinds == ["order.created", "order.cancelled", "order.filled"]


async def test_rejected_by_the_exchange_after_acceptance(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-rej")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        reason = ExchangeReason(
            "POST_ONLY_WOULD_TAKE", "EC_PostOnlyWillTakeLiquidity", "post-only would take"
        )
        await publish_update(
            stack, message(order(cid=cid, oid=oid, status="rejected", reason=reason))
        )
        done = await stack.order_status(cid, "rejected")
        assert done.reject_code == "POST_ONLY_WOULD_TAKE"
        assert done.exchange_code == "EC_PostOnlyWillTakeLiquidity"
        assert done.reject_reason == "post-only would take"
        kinds = await events_for(stack, cid)
        assert kinds == ["order.created", "order.rejected"]


async def test_an_impossible_transition_is_quarantined_not_applied(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-q")
        cid, oid = placed.client_order_id, placed.exchange_order_id
        assert oid is not None
        await publish_update(
            stack, message(order(cid=cid, oid=oid, status="rejected", updated_ms=T0 + 7000))
        )
        await stack.order_status(cid, "rejected")
        await publish_update(
            stack, message(order(cid=cid, oid=oid, status="new", updated_ms=T0 + 8000))
        )

        async def quarantined() -> list[QuarantinedUpdate]:
            async with stack.service.sessions() as session:
                return list((await session.exec(select(QuarantinedUpdate))).all())

        [row] = await wait_for(quarantined, message="quarantined report")
        assert "rejected order cannot become new" in row.reason
        assert row.payload["status"] == "new"
        assert (await stack.order_status(cid, "rejected")).status == "rejected"


BAD_UPDATES = [
    (b"nope", "not JSON"),
    (b'{"format": "om.reports/1", "reports": []}', "non-empty list"),
    (
        b'{"format": "om.reports/1", "reports": [{"kind": "order", "exchange_order_id": "x",'
        b' "category": "linear", "side": "buy", "status": "new", "qty": "1"}]}',
        "symbol is required",
    ),
    (
        b'{"format": "om.reports/1", "reports": [{"kind": "order", "exchange_order_id": "x",'
        b' "symbol": "BTCUSDT", "category": "linear", "side": "buy", "status": "new",'
        b' "qty": "abc"}]}',
        "qty is not a number",
    ),
    (
        b'{"format": "om.reports/1", "reports": [{"kind": "execution", "exec_id": "e",'
        b' "exchange_order_id": "x", "symbol": "BTCUSDT", "category": "linear", "side": "buy",'
        b' "qty": "1", "price": "1", "executed_at": "9999-01-01T00:00:00+00:00"}]}',
        "executed_at is out of range",
    ),
    (
        b'{"format": "om.reports/1", "reports": [{"kind": "order", "exchange_order_id": "'
        + b"x" * 65
        + b'", "symbol": "BTCUSDT", "category": "linear", "side": "buy", "status": "new",'
        b' "qty": "1"}]}',
        "longer than 64",
    ),
]


async def test_malformed_updates_are_dead_lettered_and_the_next_is_applied(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        placed = await resting_order(stack, "rf-bad")
        for body, _ in BAD_UPDATES:
            await publish_update(stack, body)
        assert placed.exchange_order_id is not None
        cancel = order(cid=placed.client_order_id, oid=placed.exchange_order_id, status="cancelled")
        await publish_update(stack, message(cancel))
        await stack.order_status(placed.client_order_id, "cancelled")
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
        placed = await stack.order_status(cid, "filled")
        assert placed.exchange_order_id == stack.paper.orders[cid].order_id
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
    def external(oid: str, side: str, qty: str, value: str, fee: str, idx: int) -> bytes:
        return message(
            order(
                cid="",
                oid=oid,
                status="filled",
                side=side,
                qty=qty,
                filled=qty,
                value=value,
                fees={"USDT": fee},
                position_idx=idx,
                order_type="market",
                price=None,
            )
        )

    async with running(*urls) as stack:
        await publish_update(stack, external("h-1", "buy", "2", "200", "0.1", 1))
        await publish_update(stack, external("h-2", "sell", "1", "105", "0.05", 2))
        await publish_update(stack, external("h-3", "sell", "0.5", "55", "0.02", 1))
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
