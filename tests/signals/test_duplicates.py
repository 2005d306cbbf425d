"""Issue 14, observation 5: a signal id known with other content is rejected
``SIGNAL_ID_CONFLICT`` (a ``signal.rejected`` event and a warning), the first stored copy
wins whatever the order or timing, identical copies stay idempotent, and no message is
acknowledged with an undocumented outcome."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from om_core.db.models import SignalRecord
from om_core.messaging.base import Message
from om_core.signals.store import SignalStatus
from tests.flow.stack import Stack, running


def sig(signal_id: str, **fields: Any) -> dict[str, Any]:
    return {"signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy", "qty": "0.010", **fields}


def message(payload: dict[str, Any]) -> Message:
    return Message(body=json.dumps(payload).encode(), message_id=payload["signal_id"])


async def conflict_events(stack: Stack, signal_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await stack.all_events()
        if e["event_type"] == "signal.rejected"
        and e["signal_id"] == signal_id
        and [r["code"] for r in e["reasons"]] == ["SIGNAL_ID_CONFLICT"]
    ]


@pytest.mark.parametrize("winner_qty", ["0.010", "0.020"])
async def test_the_first_stored_copy_wins_and_a_conflicting_one_is_rejected(
    server_urls: tuple[str, str], winner_qty: str, caplog: pytest.LogCaptureFixture
) -> None:
    loser_qty = "0.020" if winner_qty == "0.010" else "0.010"
    async with running(*server_urls) as stack:
        await stack.publish(sig("twin", qty=winner_qty))
        assert (await stack.outcome("twin")).status == "placed"
        with caplog.at_level(logging.WARNING):
            await stack.publish(sig("twin", qty=loser_qty))
            # Awaited: the consumer decides the second copy after this publish returns.
            [event] = await stack.events(1, types={"signal.rejected"})
        assert event["signal_id"] == "twin"
        assert [r["code"] for r in event["reasons"]] == ["SIGNAL_ID_CONFLICT"]
        assert event["reasons"][0]["details"] == {"fields": "qty"}
        assert any(
            "twin" in r.getMessage() and "SIGNAL_ID_CONFLICT" in r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING
        )
        row = await stack.signal_row("twin")
        assert row is not None and row.status == "placed" and row.payload["qty"] == winner_qty
        [order] = await stack.orders("twin")
        assert order.qty == Decimal(winner_qty)
        assert len(stack.paper.create_calls) == 1


async def test_in_one_batch_the_first_copy_wins_either_way(urls: tuple[str, str]) -> None:
    async with running(*urls, consume=False) as stack:
        consumer = stack.service.signal_consumer
        for first, second in (("0.010", "0.030"), ("0.030", "0.010")):
            signal_id = f"batch-{first}"
            results = await consumer.handle_batch(
                [
                    message(sig(signal_id, qty=first)),
                    message(sig(signal_id, qty=second)),
                    message(sig(signal_id, qty=first)),  # identical to the first: a duplicate
                ]
            )
            assert results == [None, None, None]
            row = await stack.signal_row(signal_id)
            assert row is not None and row.status == "placed"
            [order] = await stack.orders(signal_id)
            assert order.qty == Decimal(first)
            assert len(await conflict_events(stack, signal_id)) == 1


async def test_outcomes_of_conflicts_and_duplicates_are_documented_ones(
    urls: tuple[str, str],
) -> None:
    async with running(*urls, consume=False) as stack:
        processor = stack.service.processor
        consumer = stack.service.signal_consumer
        first = await consumer.process_bytes(json.dumps(sig("o-1")).encode())
        again = await consumer.process_bytes(json.dumps(sig("o-1")).encode())
        other = await consumer.process_bytes(json.dumps(sig("o-1", side="sell")).encode())
        assert (first.status, first.duplicate) == ("placed", False)
        assert (again.status, again.duplicate) == ("placed", True)
        assert other.status == "rejected" and not other.duplicate
        assert [r["code"] for r in other.reasons] == ["SIGNAL_ID_CONFLICT"]
        assert other.reasons[0]["details"] == {"fields": "side"}

        # A signal whose order is in doubt is reported as in_doubt, not as "processing".
        async with stack.service.sessions() as session, session.begin():
            session.add(SignalRecord(signal_id="o-2", status=SignalStatus.PROCESSING))
        outcome = await processor.outcome("o-2")
        assert outcome is not None and outcome.status == "in_doubt"
        documented = {"placed", "rejected", "in_doubt"}
        assert {first.status, again.status, other.status, outcome.status} <= documented


async def test_a_valid_copy_after_a_dead_lettered_one_is_not_a_conflict(
    urls: tuple[str, str],
) -> None:
    async with running(*urls, consume=False) as stack:
        consumer = stack.service.signal_consumer
        [error] = await consumer.handle_batch([message(sig("phoenix", qty="-1"))])
        assert error is not None  # dead-lettered
        outcome = await consumer.process_bytes(json.dumps(sig("phoenix")).encode())
        assert outcome.status == "placed"
        assert await conflict_events(stack, "phoenix") == []


async def test_a_batch_led_by_a_conflicting_copy_still_reports_the_stored_outcome(
    urls: tuple[str, str],
) -> None:
    async with running(*urls, consume=False) as stack:
        consumer = stack.service.signal_consumer
        assert (await consumer.process_bytes(json.dumps(sig("led")).encode())).status == "placed"
        deadline = consumer._deadline()
        outcomes = await stack.service.processor.process_many(
            [
                (await consumer._parse(json.dumps(sig("led", qty="0.5")).encode(), deadline)),
                (await consumer._parse(json.dumps(sig("led")).encode(), deadline)),
            ]
        )
        assert [(o.status, o.duplicate) for o in outcomes] == [
            ("rejected", False),
            ("placed", True),
        ]
        assert [r["code"] for r in outcomes[0].reasons] == ["SIGNAL_ID_CONFLICT"]
        assert len(await stack.orders("led")) == 1


async def test_racing_conflicting_copies_end_as_the_stored_one_and_one_refusal(
    server_urls: tuple[str, str],
) -> None:
    """Copies published back to back, decided in whatever batches and order the consumer
    makes: for each id, one order, with the stored copy's content, and one conflict event."""
    ids = [f"race-{n}" for n in range(12)]
    async with running(*server_urls) as stack:
        for n, signal_id in enumerate(ids):
            a, b = sig(signal_id, qty="0.010"), sig(signal_id, qty="0.020")
            for payload in (a, b) if n % 2 else (b, a):
                await stack.publish(payload)
        for signal_id in ids:
            await stack.outcome(signal_id)
        rejected = await stack.events(len(ids), types={"signal.rejected"}, timeout=20)
        assert sorted(e["signal_id"] for e in rejected) == sorted(ids)
        assert {r["code"] for e in rejected for r in e["reasons"]} == {"SIGNAL_ID_CONFLICT"}
        for signal_id in ids:
            row = await stack.signal_row(signal_id)
            assert row is not None and row.status == "placed"
            [order] = await stack.orders(signal_id)
            assert order.qty == Decimal(row.payload["qty"])
        assert len(stack.paper.create_calls) == len(ids)
