"""``om signal send``: one signal published to the configured broker with publisher
confirms, validated first; read back from the real RabbitMQ queue."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.signals.contract import parse_signal
from tests.sdk.cli import om


async def _take(amqp_url: str) -> list[tuple[str | None, dict[str, object]]]:
    bus = RabbitBus(amqp_url, queues=(SIGNALS_QUEUE,))
    await bus.start()
    try:
        taken = []
        while (message := await bus.get(SIGNALS_QUEUE, timeout=0)) is not None:
            taken.append((message.message_id, json.loads(message.body)))
        return taken
    finally:
        await bus.close()


@pytest.mark.rabbitmq
async def test_send_publishes_one_confirmed_valid_signal(amqp_url: str, tmp_path: Path) -> None:
    result = om(
        "signal", "send", "--symbol", "BTCUSDT", "--side", "buy", "--qty", "0.010",
        "--price", "60000.5", "--signal-id", "manual-1",
        cwd=tmp_path, OM_BROKER_URL=amqp_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "manual-1"
    ((message_id, body),) = await _take(amqp_url)
    assert message_id == "manual-1"
    created = body.pop("created_at")
    assert datetime.fromisoformat(str(created)).tzinfo is not None
    assert body == {
        "signal_id": "manual-1",
        "symbol": "BTCUSDT",
        "side": "buy",
        "qty": "0.010",
        "price": "60000.5",
    }
    assert parse_signal(body).qty is not None


@pytest.mark.rabbitmq
async def test_send_starts_from_json_and_generates_an_id(amqp_url: str, tmp_path: Path) -> None:
    base = {"symbol": "ETHUSDT", "side": "sell", "notional": 250.5, "metadata": {"atr": 41.25}}
    result = om(
        "signal", "send", "--json", json.dumps(base), "--side", "buy",
        cwd=tmp_path, OM_BROKER_URL=amqp_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    signal_id = result.stdout.strip()
    ((message_id, body),) = await _take(amqp_url)
    assert message_id == signal_id == body["signal_id"] and len(signal_id) == 36
    # Options win over --json; numbers stay exact (never a float on the way).
    assert (body["side"], body["notional"], body["metadata"]) == ("buy", "250.5", {"atr": "41.25"})


@pytest.mark.rabbitmq
async def test_an_invalid_signal_is_never_published(amqp_url: str, tmp_path: Path) -> None:
    result = om("signal", "send", "--symbol", "BTCUSDT", cwd=tmp_path, OM_BROKER_URL=amqp_url)
    assert result.returncode == 2
    assert "error: side: required" in result.stderr
    bad_qty = om(
        "signal", "send", "--symbol", "BTCUSDT", "--side", "buy", "--qty", "-1",
        cwd=tmp_path, OM_BROKER_URL=amqp_url,
    )  # fmt: skip
    assert bad_qty.returncode == 2 and "qty: must be greater than 0" in bad_qty.stderr
    assert await _take(amqp_url) == []


def test_memory_broker_cannot_be_reached_from_another_process(tmp_path: Path) -> None:
    result = om("signal", "send", "--symbol", "BTCUSDT", "--side", "buy", cwd=tmp_path)
    assert result.returncode == 2
    assert "memory://" in result.stderr and "another process cannot reach it" in result.stderr
    assert result.stdout == ""


def test_an_unreachable_broker_is_an_error_without_the_password(tmp_path: Path) -> None:
    result = om(
        "signal", "send", "--symbol", "BTCUSDT", "--side", "buy",
        cwd=tmp_path, OM_BROKER_URL="amqp://guest:s3cr3t-pw@127.0.0.1:1/",
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: cannot publish: AMQPConnectionError" in result.stderr
    assert "s3cr3t-pw" not in result.stderr and result.stdout == ""
