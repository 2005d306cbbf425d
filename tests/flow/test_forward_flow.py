"""Signal → order, end to end, on both stacks: SQLite + in-process bus, and PostgreSQL +
RabbitMQ. The exchange is the paper exchange, which records every create call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from om_core.db.models import TradingStateRow
from om_core.messaging.base import ERROR_HEADER, ORIGINAL_QUEUE_HEADER, dlq_name
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.orders.client_id import client_order_id
from tests.flow.stack import running


def sig(signal_id: str, **fields: Any) -> dict[str, Any]:
    return {"signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy", "qty": "0.010", **fields}


async def test_a_signal_becomes_one_order_a_relationship_and_an_event(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        await stack.publish(sig("s-1", strategy_id="trend"))
        row = await stack.outcome("s-1")
        assert row.status == "placed", row.reasons

        [order] = await stack.orders("s-1")
        assert order.client_order_id == client_order_id("s-1", 0)
        assert (order.symbol, order.side, order.order_type) == ("BTCUSDT", "buy", "market")
        assert order.qty == Decimal("0.010")
        assert order.status in {"submitted", "new", "filled"}
        assert order.exchange_order_id
        [rel] = await stack.relationships("s-1")
        assert rel.order_id == order.id and rel.leg == 0

        [event] = await stack.events(1, types={"order.created"})
        assert event["signal_id"] == "s-1"
        assert event["order"]["client_order_id"] == order.client_order_id
        assert Decimal(event["order"]["qty"]) == Decimal("0.010")
        assert stack.paper.create_calls == [order.client_order_id]


async def test_limit_signal_is_rounded_to_tick_and_rests(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        await stack.publish(sig("s-lim", price="59000.07", side="Buy"))
        assert (await stack.outcome("s-lim")).status == "placed"
        [order] = await stack.orders("s-lim")
        assert order.order_type == "limit"
        assert order.price == Decimal("59000.0")  # a buy never pays more than asked


def _halted() -> TradingStateRow:
    return TradingStateRow(id=1, state="halted", reason="test")


RISK_CASES = [
    ("SYMBOL_NOT_ALLOWED", {"allowed_symbols": ["ETHUSDT"]}, {}),
    ("STRENGTH_TOO_LOW", {"min_strength": "0.5"}, {"strength": "0.2"}),
    ("MAX_ORDER_NOTIONAL", {"max_order_notional": "100"}, {}),
    ("MAX_GROSS_EXPOSURE", {"max_gross_exposure": "500"}, {}),
    ("MAX_POSITION_NOTIONAL", {"max_position_notional": "500"}, {}),
    ("QTY_BELOW_MINIMUM", {}, {"qty": "0.0001"}),
]


@pytest.mark.parametrize(("code", "risk", "overrides"), RISK_CASES, ids=[c[0] for c in RISK_CASES])
async def test_each_risk_rule_rejects_with_its_code(
    urls: tuple[str, str], code: str, risk: dict[str, Any], overrides: dict[str, Any]
) -> None:
    fields = dict(overrides)
    async with running(*urls, plugin_config={"risk": risk}) as stack:
        await stack.publish(sig("s-risk", **fields))
        row = await stack.outcome("s-risk")
        assert row.status == "rejected"
        assert code in [r["code"] for r in row.reasons], row.reasons
        assert all(r["plugin"] and r["message"] for r in row.reasons)
        assert await stack.orders("s-risk") == []
        [event] = await stack.events(1)
        assert event["event_type"] == "signal.rejected"
        assert code in [r["code"] for r in event["reasons"]]
        assert stack.paper.create_calls == []


async def test_state_dependent_rules(urls: tuple[str, str]) -> None:
    risk = {"max_open_orders_per_symbol": 1, "max_orders_per_minute": 5}
    async with running(*urls, plugin_config={"risk": risk}) as stack:
        # A resting limit order is an open order; the next signal exceeds the open-order cap.
        await stack.publish(sig("open-1", price="50000"))
        assert (await stack.outcome("open-1")).status == "placed"
        await stack.publish(sig("open-2", price="50000"))
        row = await stack.outcome("open-2")
        assert [r["code"] for r in row.reasons] == ["MAX_OPEN_ORDERS"]

        async with stack.service.sessions() as session, session.begin():
            session.add(_halted())
        await stack.publish(sig("halted-1"))
        row = await stack.outcome("halted-1")
        assert "TRADING_HALTED" in [r["code"] for r in row.reasons]


async def test_order_rate_limit(urls: tuple[str, str]) -> None:
    async with running(*urls, plugin_config={"risk": {"max_orders_per_minute": 2}}) as stack:
        for n in range(3):
            await stack.publish(sig(f"rate-{n}"))
            await stack.outcome(f"rate-{n}")
        row = await stack.signal_row("rate-2")
        assert row is not None and [r["code"] for r in row.reasons] == ["ORDER_RATE_LIMIT"]
        assert len(stack.paper.create_calls) == 2


async def test_stale_signals_are_rejected_not_executed_late(urls: tuple[str, str]) -> None:
    born = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    async with running(*urls) as stack:
        await stack.publish(sig("old", created_at=born))
        row = await stack.outcome("old")
        assert [(r["plugin"], r["code"]) for r in row.reasons] == [("engine", "SIGNAL_STALE")]
        assert stack.paper.create_calls == []


BAD_MESSAGES = [
    (b"{not json", "not valid JSON"),
    (b'"a string"', "must be a JSON object"),
    (b'{"signal_id": "bad-1", "symbol": "BTCUSDT"}', "side: required"),
    (b'{"signal_id": "bad-2", "symbol": "BTCUSDT", "side": "buy", "qty": "-3"}', "qty"),
    (b"\xff\xfe\x00", "not UTF-8"),
]


async def test_bad_messages_are_dead_lettered_with_reason_and_the_next_signal_is_processed(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        for body, _ in BAD_MESSAGES:
            await stack.publish(body)
        await stack.publish(sig("good-after-bad"))
        assert (await stack.outcome("good-after-bad")).status == "placed"

        dead = [await stack.next_message(dlq_name(SIGNALS_QUEUE)) for _ in BAD_MESSAGES]
        by_body = {m.body: m for m in dead}
        for body, reason in BAD_MESSAGES:
            message = by_body[body]  # kept byte for byte
            assert reason in message.headers[ERROR_HEADER]
            assert message.headers[ORIGINAL_QUEUE_HEADER] == SIGNALS_QUEUE
        # Where an id could be read, the signal is recorded with the reason.
        row = await stack.signal_row("bad-1")
        assert row is not None and row.status == "dead_lettered"
        assert "side: required" in row.reasons[0]["message"]


async def test_the_same_signal_three_times_places_one_order(urls: tuple[str, str]) -> None:
    async with running(*urls) as stack:
        for _ in range(3):
            await stack.publish(sig("dup"))
        await stack.publish(sig("after-dup"))
        await stack.outcome("after-dup")
        assert (await stack.outcome("dup")).status == "placed"
        assert len(await stack.orders("dup")) == 1
        assert stack.paper.create_calls.count(client_order_id("dup", 0)) == 1
        # One order.created per order, however often the signal came.
        await stack.order_status(client_order_id("dup", 0), "filled")
        await stack.order_status(client_order_id("after-dup", 0), "filled")
        events = await stack.all_events()
        created = sorted(e["signal_id"] for e in events if e["event_type"] == "order.created")
        assert created == ["after-dup", "dup"]
        filled = sorted(e["signal_id"] for e in events if e["event_type"] == "order.filled")
        assert filled == ["after-dup", "dup"]


class Crash(Exception):
    pass


async def test_a_crash_between_exchange_call_and_commit_never_places_twice(
    urls: tuple[str, str],
) -> None:
    crashed = asyncio.Event()

    async def die_once(client_id: str) -> None:
        if not crashed.is_set():
            crashed.set()
            raise Crash(f"killed after sending {client_id}")

    async with running(*urls, before_commit=die_once) as stack:
        await stack.publish(sig("crashy"))
        # The broker redelivers (the handler died); the engine finds the intent, looks the
        # order up by client id instead of sending it again, and settles it.
        row = await stack.outcome("crashy")
        assert crashed.is_set()
        assert row.status == "placed"
        cid = client_order_id("crashy", 0)
        assert stack.paper.create_calls == [cid]
        [order] = await stack.orders("crashy")
        assert order.exchange_order_id == stack.paper.orders[cid].order_id
        # Republishing after recovery changes nothing either.
        await stack.publish(sig("crashy"))
        await stack.publish(sig("sentinel"))
        await stack.outcome("sentinel")
        assert stack.paper.create_calls.count(cid) == 1


async def test_exchange_timeout_after_executing_is_resolved_by_lookup(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        stack.paper.fail_next_place(TimeoutError("read timed out"), execute=True)
        await stack.publish(sig("timeout-executed"))
        row = await stack.outcome("timeout-executed")
        assert row.status == "placed"
        cid = client_order_id("timeout-executed", 0)
        assert stack.paper.create_calls == [cid]
        assert [o.status for o in await stack.orders("timeout-executed")] != ["submit_unknown"]


async def test_exchange_timeout_without_executing_is_resent_with_the_same_id(
    urls: tuple[str, str],
) -> None:
    async with running(*urls) as stack:
        stack.paper.fail_next_place(TimeoutError("read timed out"), execute=False)
        await stack.publish(sig("timeout-lost"))
        cid = client_order_id("timeout-lost", 0)
        row = await stack.outcome("timeout-lost", timeout=20)
        assert row.status == "placed"
        assert stack.paper.create_calls == [cid, cid]  # sent again only after lookups
        assert list(stack.paper.orders) == [cid]


async def test_a_definitive_exchange_rejection_is_stored_and_published(
    urls: tuple[str, str],
) -> None:
    from om_plugins import ExchangeRejected

    async with running(*urls) as stack:
        stack.paper.fail_next_place(
            ExchangeRejected(
                "Insufficient balance", code="110007", reason_code="INSUFFICIENT_BALANCE"
            ),
            execute=False,
        )
        await stack.publish(sig("broke"))
        row = await stack.outcome("broke")
        assert row.status == "rejected"
        assert row.reasons[0]["code"] == "INSUFFICIENT_BALANCE"
        assert row.reasons[0]["details"] == {"exchange_code": "110007"}
        [order] = await stack.orders("broke")
        assert (order.status, order.reject_code) == ("rejected", "INSUFFICIENT_BALANCE")
        assert (order.exchange_code, order.exchange_message) == ("110007", "Insufficient balance")
        assert order.reject_reason == "Insufficient balance"
        [event] = await stack.events(1)
        assert event["event_type"] == "order.rejected"
        assert event["order"]["reject_code"] == "INSUFFICIENT_BALANCE"
        assert event["order"]["exchange_code"] == "110007"
        assert event["order"]["exchange_message"] == "Insufficient balance"

        # An exchange code the adapter has no neutral word for keeps its own beside it.
        stack.paper.fail_next_place(ExchangeRejected("odd", code="99999"), execute=False)
        await stack.publish(sig("odd"))
        assert (await stack.outcome("odd")).reasons[0]["code"] == "EXCHANGE_REJECTED"
        [order] = await stack.orders("odd")
        assert (order.reject_code, order.exchange_code) == ("EXCHANGE_REJECTED", "99999")


async def test_exchange_unavailable_is_retried_and_a_stale_signal_is_never_sent(
    urls: tuple[str, str],
) -> None:
    from om_plugins import ExchangeUnavailable

    async with running(*urls, env={"OM_MAX_SIGNAL_AGE_SECONDS": "1"}) as stack:
        # Certainly not sent (e.g. connection refused): retried, same client id.
        stack.paper.fail_next_place(ExchangeUnavailable("connection refused"), execute=False)
        await stack.publish(sig("unavailable-once"))
        assert (await stack.outcome("unavailable-once")).status == "placed"
        cid = client_order_id("unavailable-once", 0)
        assert stack.paper.create_calls == [cid, cid]
        assert list(stack.paper.orders) == [cid]

        # Unavailable until the signal is too old: rejected as stale, never executed late.
        stack.paper.fail_next_place(
            ExchangeUnavailable("rate limited", retry_after=1.5), execute=False
        )
        await stack.publish(sig("unavailable-long"))
        row = await stack.outcome("unavailable-long")
        assert row.status == "rejected"
        assert row.reasons[0]["code"] == "SIGNAL_STALE"
        [order] = await stack.orders("unavailable-long")
        assert (order.status, order.reject_code) == ("rejected", "SIGNAL_STALE")
        assert client_order_id("unavailable-long", 0) not in stack.paper.orders
