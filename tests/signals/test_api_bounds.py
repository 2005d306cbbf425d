"""Issue 14 through the API: ``POST /api/v1/signals`` uses the bus's own contract entry, so
the same bounds answer 413/422 before anything is queued, a conflicting copy answers 409
(``SIGNAL_ID_CONFLICT``, with its event), and timing is judged by the same engine check."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from om_core.messaging.topology import SIGNALS_QUEUE
from tests.api.conftest import KEYS, Api, api_for, error_code, signal
from tests.conftest import wait_for


@pytest.fixture
async def api(server_urls: tuple[str, str]) -> AsyncIterator[Api]:
    """The API of a service on PostgreSQL + RabbitMQ."""
    async with api_for(*server_urls) as value:
        yield value


async def post(api: Api, body: object) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await api.client.post(
        "/api/v1/signals",
        content=raw,
        headers={"X-API-Key": KEYS["trade"], "Content-Type": "application/json"},
    )


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


async def test_a_10_mb_signal_is_413_and_nothing_is_queued(api: Api) -> None:
    # Above the signal's limit and below the API's body limit: the signal contract says so.
    response = await post(api, signal("large", metadata={"blob": "x" * (100 * 1024)}))
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"
    assert "maximum of 65536 (OM_MAX_MESSAGE_BYTES)" in response.json()["error"]["message"]
    assert await api.stack.signal_row("large") is None
    # 10 MB: the API's body limit refuses it before it is read.
    response = await post(api, signal("huge", metadata={"blob": "x" * (10 * 1024 * 1024)}))
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"

    # Without a Content-Length (chunked), the body is read no further than the limit.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"signal_id": "chunked", "symbol": "BTCUSDT", "side": "buy", "metadata": "'
        for _ in range(160):  # 10 MB
            yield b"x" * 65536
        yield b'"}'

    response = await api.client.post(
        "/api/v1/signals",
        content=chunks(),
        headers={"X-API-Key": KEYS["trade"], "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert await api.stack.service.bus.message_count(SIGNALS_QUEUE) == 0
    assert await api.stack.signal_row("huge") is None


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (signal("deep", metadata=nested(300)), "nested deeper than 32 levels"),
        (signal("surrogate", metadata={"n": "\ud800"}), "lone surrogate"),
        (signal("nul\x00id"), "NUL or a lone surrogate"),
        (signal("x" * 129), "signal_id: required string of 1-128 characters"),
        (signal("newline", symbol="BTCUSDT\n"), "symbol:"),
        (signal("long-s", symbol="BTCUſDT"), "symbol:"),
        (signal("huge-qty", qty="1e30"), "qty: must be below 10^20"),
    ],
    ids=["deep", "surrogate", "nul-id", "long-id", "newline-symbol", "long-s-symbol", "qty"],
)
async def test_what_the_bus_dead_letters_is_422_here(
    api: Api, payload: dict[str, Any], fragment: str
) -> None:
    response = await post(api, payload)
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_signal"
    assert any(fragment in p for p in response.json()["error"]["details"]["problems"])
    assert await api.stack.service.bus.message_count(SIGNALS_QUEUE) == 0


async def test_a_signal_within_the_bounds_is_served_back(api: Api) -> None:
    metadata = {"deep": nested(30), "text": "ü€𝄞"}
    response = await post(api, signal("fits", metadata=metadata))
    assert response.status_code == 202, response.text
    assert (await api.stack.outcome("fits")).status == "placed"
    got = await api.get("/api/v1/signals/fits")
    assert got.status_code == 200 and got.json()["payload"]["metadata"] == metadata


async def test_a_signal_from_the_future_is_rejected_by_the_same_engine_check(api: Api) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await post(api, signal("api-future", created_at=ahead))).status_code == 202
    row = await api.stack.outcome("api-future")
    assert [r["code"] for r in row.reasons] == ["SIGNAL_FROM_FUTURE"]


async def test_a_conflicting_copy_is_409_and_the_first_wins(api: Api) -> None:
    assert (await post(api, signal("api-twin", qty="0.010"))).status_code == 202
    assert (await api.stack.outcome("api-twin")).status == "placed"

    same = await post(api, signal("api-twin", qty="0.010"))
    assert same.status_code == 200 and same.json()["duplicate"] is True

    other = await post(api, signal("api-twin", qty="0.020"))
    assert other.status_code == 409, other.text
    assert error_code(other) == "signal_id_conflict"
    assert other.json()["error"]["details"] == {"signal_id": "api-twin", "fields": "qty"}
    [event] = await api.stack.events(1, types={"signal.rejected"})
    assert event["signal_id"] == "api-twin"
    assert [r["code"] for r in event["reasons"]] == ["SIGNAL_ID_CONFLICT"]
    row = await api.stack.signal_row("api-twin")
    assert row is not None and row.payload["qty"] == "0.010"
    assert len(await api.stack.orders("api-twin")) == 1


async def test_a_conflicting_copy_of_a_queued_signal_is_409(api: Api) -> None:
    for consumer in api.stack.service._consumers:
        await consumer.stop(0)
    assert (await post(api, signal("queued-twin", qty="0.010"))).status_code == 202
    again = await post(api, signal("queued-twin", qty="0.010"))
    assert again.status_code == 200 and again.json()["status"] == "queued"
    other = await post(api, signal("queued-twin", qty="0.020"))
    assert other.status_code == 409 and error_code(other) == "signal_id_conflict"
    await wait_for(lambda: api.stack.service.bus.message_count(SIGNALS_QUEUE), message="queued")
    assert await api.stack.service.bus.message_count(SIGNALS_QUEUE) == 1


@pytest.mark.parametrize(
    "payload",
    [
        signal("nul\x00id"),
        signal("\ud800"),
        signal("pv-deep", metadata=nested(300)),
        signal("pv-surrogate", metadata={"n": "\udc00"}),
        signal("pv-symbol", symbol="BTCUſDT"),
    ],
    ids=["nul-id", "surrogate-id", "deep", "surrogate", "long-s-symbol"],
)
async def test_a_preview_of_what_the_bus_refuses_is_its_problems_not_a_500(
    api: Api, payload: dict[str, Any]
) -> None:
    response = await api.client.post(
        "/api/v1/orders/preview",
        content=json.dumps(payload).encode(),
        headers={"X-API-Key": KEYS["trade"]},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["would_send"] is None
    assert {(r["plugin"], r["code"]) for r in result["rejections"]} == {
        ("engine", "INVALID_SIGNAL")
    }


async def test_a_preview_of_a_signal_from_the_future_says_so(api: Api) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await api.client.post(
        "/api/v1/orders/preview",
        content=json.dumps(signal("pv-future", created_at=ahead)).encode(),
        headers={"X-API-Key": KEYS["trade"]},
    )
    assert response.status_code == 200, response.text
    assert [r["code"] for r in response.json()["rejections"]] == ["SIGNAL_FROM_FUTURE"]
