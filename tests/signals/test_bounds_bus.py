"""Issue 14, observations 3, 4 and 6 on the bus: what the database cannot store or a reader
cannot serve back is dead-lettered at once with its reason, on PostgreSQL + RabbitMQ, and
the next signal is processed."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import col, select

from om_core.db.models import SignalRecord
from om_core.messaging.base import ERROR_HEADER, dlq_name
from om_core.messaging.topology import SIGNALS_QUEUE
from tests.flow.stack import running


def sig(signal_id: str, **fields: Any) -> dict[str, Any]:
    return {"signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy", "qty": "0.010", **fields}


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


def encode(payload: dict[str, Any]) -> bytes:
    # json.dumps writes a lone surrogate as the escape "\ud800", as a hostile producer would.
    return json.dumps(payload).encode()


#: (body, the reason's fragment, the id it may be recorded under — None: not recorded)
HOSTILE: list[tuple[bytes, str, str | None]] = [
    (
        encode(sig("huge", metadata={"blob": "x" * (10 * 1024 * 1024)})),
        "more than the maximum of 65536 (OM_MAX_MESSAGE_BYTES)",
        None,
    ),
    (encode(sig("deep-300", metadata=nested(300))), "nested deeper than 32 levels", "deep-300"),
    (encode(sig("deep-900", metadata=nested(900))), "nested deeper than 32 levels", "deep-900"),
    (encode(sig("surrogate", metadata={"n": "\ud800"})), "lone surrogate", "surrogate"),
    (encode(sig("nul\x00id")), "NUL or a lone surrogate", None),
    (encode(sig("\ud800")), "NUL or a lone surrogate", None),
    (encode(sig("x" * 129)), "signal_id: required string of 1-128 characters", None),
    (encode(sig("newline", symbol="BTCUSDT\n")), "symbol:", "newline"),
    (encode(sig("long-s", symbol="BTCUſDT")), "symbol:", "long-s"),
    (encode(sig("huge-qty", qty="1e30")), "qty: must be below 10^20", "huge-qty"),
]


async def test_hostile_signals_are_dead_lettered_at_once_and_nothing_unstorable_is_kept(
    server_urls: tuple[str, str],
) -> None:
    async with running(*server_urls) as stack:
        for body, _, _ in HOSTILE:
            await stack.publish(body)
        await stack.publish(sig("good-after-hostile"))
        assert (await stack.outcome("good-after-hostile")).status == "placed"

        dead = [await stack.next_message(dlq_name(SIGNALS_QUEUE)) for _ in HOSTILE]
        by_body = {m.body: m for m in dead}
        for body, reason, _ in HOSTILE:
            message = by_body[body]  # kept byte for byte, in the DLQ once
            assert reason in message.headers[ERROR_HEADER], message.headers[ERROR_HEADER]
            # Dead-lettered on its first delivery: never retried as if transient.
            assert message.delivery_count == 0, (reason, message.delivery_count)

        async with stack.service.sessions() as session:
            rows = (await session.exec(select(SignalRecord).order_by(col(SignalRecord.id)))).all()
        recorded = {r.signal_id: r for r in rows}
        expected = {sid for _, _, sid in HOSTILE if sid is not None} | {"good-after-hostile"}
        assert set(recorded) == expected
        for _, reason, signal_id in HOSTILE:
            if signal_id is None:
                continue
            row = recorded[signal_id]
            assert row.status == "dead_lettered"
            assert reason in row.reasons[0]["message"]
            assert row.reasons[0]["code"] == "INVALID_SIGNAL"
            if signal_id in ("deep-300", "deep-900", "surrogate"):
                assert row.payload == {}  # what broke a bound is not stored
        # Nothing was folded into a tradable symbol, nothing placed but the good signal.
        assert stack.paper.create_calls == [
            o.client_order_id for o in await stack.orders("good-after-hostile")
        ]


async def test_a_signal_just_within_the_bounds_is_placed_and_stored_whole(
    server_urls: tuple[str, str],
) -> None:
    metadata = {"deep": nested(30), "text": "ü€𝄞" * 1000}
    async with running(*server_urls) as stack:
        await stack.publish(sig("x" * 128, metadata=metadata))
        row = await stack.outcome("x" * 128)
        assert row.status == "placed", row.reasons
        assert row.payload["metadata"] == metadata


async def test_the_message_size_limit_is_a_setting(server_urls: tuple[str, str]) -> None:
    async with running(*server_urls, env={"OM_MAX_MESSAGE_BYTES": "2048"}) as stack:
        big = encode(sig("big", metadata={"blob": "x" * 3000}))
        await stack.publish(big)
        await stack.publish(sig("small", metadata={"blob": "x" * 1000}))
        assert (await stack.outcome("small")).status == "placed"
        message = await stack.next_message(dlq_name(SIGNALS_QUEUE))
        assert message.body == big
        assert "more than the maximum of 2048" in message.headers[ERROR_HEADER]
