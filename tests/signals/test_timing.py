"""Issue 14, observation 2: a signal's age cannot be dodged. A ``created_at`` ahead of the
clock is rejected ``SIGNAL_FROM_FUTURE``; without one, age counts from the AMQP
``timestamp``, else from the first receipt, which is kept across a restart; and
``OM_REQUIRE_CREATED_AT`` can make ``created_at`` mandatory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest

from om_core.db.types import utcnow
from om_core.messaging.base import ERROR_HEADER, dlq_name
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.signals.contract import parse_message
from om_plugins.errors import ExchangeUnavailable
from om_plugins.types import Signal
from tests.flow.stack import Stack, running


def sig(signal_id: str, **fields: Any) -> dict[str, Any]:
    return {"signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy", "qty": "0.010", **fields}


def codes(reasons: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["plugin"], r["code"]) for r in reasons]


async def publish_stamped(broker_url: str, payload: dict[str, Any], stamp: datetime) -> None:
    """Publish as a producer that sets the AMQP ``timestamp`` property."""
    connection = await aio_pika.connect(broker_url)
    try:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(payload).encode(),
                message_id=payload["signal_id"],
                timestamp=stamp,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=SIGNALS_QUEUE,
        )
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "created_at",
    [
        (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "2999-01-01T00:00:00Z",
        int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000),
    ],
    ids=["an-hour-ahead", "year-2999", "epoch-ms-ahead"],
)
async def test_a_signal_from_the_future_is_rejected_with_an_event(
    server_urls: tuple[str, str], created_at: object
) -> None:
    async with running(*server_urls) as stack:
        await stack.publish(sig("future", created_at=created_at))
        row = await stack.outcome("future")
        assert row.status == "rejected"
        assert codes(row.reasons) == [("engine", "SIGNAL_FROM_FUTURE")]
        [event] = await stack.events(1, types={"signal.rejected"})
        assert event["signal_id"] == "future"
        assert [r["code"] for r in event["reasons"]] == ["SIGNAL_FROM_FUTURE"]
        assert stack.paper.create_calls == []


async def test_created_at_within_the_clock_skew_is_placed(server_urls: tuple[str, str]) -> None:
    ahead = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    async with running(*server_urls, env={"OM_CLOCK_SKEW_SECONDS": "30"}) as stack:
        await stack.publish(sig("slightly-ahead", created_at=ahead))
        assert (await stack.outcome("slightly-ahead")).status == "placed"


async def test_without_created_at_age_counts_from_the_amqp_timestamp(
    server_urls: tuple[str, str],
) -> None:
    db_url, broker_url = server_urls
    async with running(db_url, broker_url) as stack:
        # Published ten minutes ago (it waited in the queue while the service was down).
        await publish_stamped(broker_url, sig("waited"), datetime.now(UTC) - timedelta(minutes=10))
        await publish_stamped(broker_url, sig("fresh"), datetime.now(UTC))
        row = await stack.outcome("waited")
        assert codes(row.reasons) == [("engine", "SIGNAL_STALE")]
        assert (await stack.outcome("fresh")).status == "placed"
        assert stack.paper.create_calls == [o.client_order_id for o in await stack.orders("fresh")]


async def test_created_at_can_be_required(server_urls: tuple[str, str]) -> None:
    async with running(*server_urls, env={"OM_REQUIRE_CREATED_AT": "true"}) as stack:
        await stack.publish(sig("no-birthday"))
        await stack.publish(sig("dated", created_at=datetime.now(UTC).isoformat()))
        assert (await stack.outcome("dated")).status == "placed"
        message = await stack.next_message(dlq_name(SIGNALS_QUEUE))
        assert json.loads(message.body)["signal_id"] == "no-birthday"
        assert (
            "created_at: required (OM_REQUIRE_CREATED_AT is set)" in message.headers[ERROR_HEADER]
        )
        row = await stack.signal_row("no-birthday")
        assert row is not None and row.status == "dead_lettered"


async def _held_once(stack: Stack, signal: Signal, payload: dict[str, Any], at: datetime) -> None:
    """The signal's first receipt at ``at``, held because the exchange cannot be read."""
    context = stack.service.processor._context
    original = context.market_data

    async def unavailable(_: Signal) -> Any:
        raise ExchangeUnavailable("the exchange is down")

    context.market_data = unavailable  # type: ignore[method-assign]
    try:
        with pytest.raises(ExchangeUnavailable):
            await stack.service.processor.process(signal, payload, at)
    finally:
        context.market_data = original  # type: ignore[method-assign]


async def test_the_first_receipt_is_kept_for_a_redelivery_after_downtime(
    server_urls: tuple[str, str],
) -> None:
    payload = sig("held")
    signal, _ = parse_message(json.dumps(payload).encode())
    first_receipt = utcnow() - timedelta(minutes=5)
    async with running(*server_urls, consume=False) as stack:
        await _held_once(stack, signal, payload, first_receipt)
        row = await stack.signal_row("held")
        assert row is not None and row.status == "processing"
        assert row.received_at == first_receipt
    # Restarted: the redelivery is received now, but the signal is five minutes old.
    async with running(*server_urls, consume=False) as stack:
        outcome = await stack.service.processor.process(signal, payload, utcnow())
        assert outcome.status == "rejected"
        assert [r["code"] for r in outcome.reasons] == ["SIGNAL_STALE"]
        assert stack.paper.create_calls == []


async def test_a_held_signal_still_in_time_is_placed_on_redelivery(
    server_urls: tuple[str, str],
) -> None:
    payload = sig("held-briefly")
    signal, _ = parse_message(json.dumps(payload).encode())
    async with running(*server_urls, consume=False) as stack:
        await _held_once(stack, signal, payload, utcnow() - timedelta(seconds=5))
        outcome = await stack.service.processor.process(signal, payload, utcnow())
        assert outcome.status == "placed", outcome.reasons
