"""POST /api/v1/signals: the queue's own contract and pipeline, over HTTP, on both buses;
GET /api/v1/signals: recent signals with their outcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from om_core.messaging.topology import SIGNALS_QUEUE
from tests.api.conftest import KEYS, Api, api_for, error_code, signal
from tests.conftest import wait_for


@pytest.fixture
async def api_on(urls: tuple[str, str]) -> AsyncIterator[Api]:
    """The API on SQLite + the in-process bus, then on PostgreSQL + RabbitMQ."""
    db_url, broker_url = urls
    async with api_for(db_url, broker_url) as value:
        yield value


async def _post(api: Api, body: object, key: str = "trade") -> tuple[int, dict[str, object], str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await api.client.post(
        "/api/v1/signals",
        content=raw,
        headers={"X-API-Key": KEYS[key], "Content-Type": "application/json"},
    )
    return response.status_code, response.json(), response.headers.get("location", "")


async def test_a_submitted_signal_becomes_an_order_once(api_on: Api) -> None:
    api = api_on
    status, body, location = await _post(api, signal("http-1", price="30000"))
    assert status == 202, body
    assert body == {
        "signal_id": "http-1",
        "status": "queued",
        "duplicate": False,
        "url": "/api/v1/signals/http-1",
        "signal": None,
    }
    assert location == "/api/v1/signals/http-1"
    assert (await api.stack.outcome("http-1")).status == "placed"
    [order] = await api.stack.orders("http-1")

    # Known now: answered with what is stored, and not queued again.
    status, body, _ = await _post(api, signal("http-1", price="30000"))
    assert status == 200, body
    assert body["duplicate"] is True and body["status"] == "placed"
    stored = body["signal"]
    assert isinstance(stored, dict)
    assert [o["id"] for o in stored["orders"]] == [order.id]
    assert await api.stack.service.bus.message_count(SIGNALS_QUEUE) == 0
    assert [o.id for o in await api.stack.orders("http-1")] == [order.id]

    listed = (await api.get("/api/v1/signals")).json()
    assert [(s["signal_id"], s["status"]) for s in listed["items"]] == [("http-1", "placed")]


async def test_a_repeat_before_the_consumer_decided_is_not_queued_twice(api_on: Api) -> None:
    api = api_on
    # Without consumers the first copy waits in the queue, undecided.
    for consumer in api.stack.service._consumers:
        await consumer.stop(0)
    first, _, _ = await _post(api, signal("http-2"))
    again, body, _ = await _post(api, signal("http-2"))
    assert (first, again) == (202, 200)
    assert body["duplicate"] is True and body["status"] == "queued"
    await wait_for(lambda: api.stack.service.bus.message_count(SIGNALS_QUEUE), message="one queued")
    assert await api.stack.service.bus.message_count(SIGNALS_QUEUE) == 1


async def test_an_invalid_signal_names_every_problem_and_queues_nothing(api_on: Api) -> None:
    api = api_on
    status, body, _ = await _post(api, {"signal_id": "bad-1", "side": "up", "qty": "-1"})
    assert status == 422
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "invalid_signal"
    problems = error["details"]["problems"]
    assert any(p.startswith("symbol:") for p in problems)
    assert any(p.startswith("side:") for p in problems)
    assert any(p.startswith("qty:") for p in problems)
    status, body, _ = await _post(api, b"{not json")
    assert status == 422 and "JSON" in json.dumps(body)
    assert await api.stack.signal_row("bad-1") is None
    assert await api.stack.service.bus.message_count(SIGNALS_QUEUE) == 0


async def test_submitting_needs_the_trade_scope(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/signals", content=json.dumps(signal("s-read")), headers={"X-API-Key": KEYS["read"]}
    )
    assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    response = await api.client.post("/api/v1/signals", content=b"{}")
    assert response.status_code == 401


async def test_a_body_beyond_the_transport_bound_is_413(api: Api) -> None:
    big = json.dumps(signal("s-big", metadata={"pad": "x" * 300_000})).encode()
    status, body, _ = await _post(api, big)
    assert status == 413 and body["error"]["code"] == "payload_too_large"  # type: ignore[index]


async def test_the_list_filters_and_pages(api: Api) -> None:
    await api.put("/api/v1/trading-state", {"state": "halted", "reason": "test"})
    for n in range(3):
        assert (await _post(api, signal(f"list-{n}")))[0] == 202
        await api.stack.outcome(f"list-{n}")
    page = (await api.get("/api/v1/signals", limit=2)).json()
    assert [s["signal_id"] for s in page["items"]] == ["list-2", "list-1"]
    rest = (await api.get("/api/v1/signals", limit=2, cursor=page["next_cursor"])).json()
    assert [s["signal_id"] for s in rest["items"]] == ["list-0"] and rest["next_cursor"] is None
    rejected = (await api.get("/api/v1/signals", status="rejected")).json()["items"]
    assert len(rejected) == 3
    assert {r["code"] for r in rejected[0]["reasons"]} >= {"TRADING_HALTED"}
    assert (await api.get("/api/v1/signals", status="placed")).json()["items"] == []
    assert (await api.get("/api/v1/signals", symbol="ETHUSDT")).json()["items"] == []
    bad = await api.get("/api/v1/signals", cursor="nope")
    assert bad.status_code == 400 and error_code(bad) == "invalid_cursor"
