"""Issue 14, observation 3: no route answers 500 for stored data of any shape.

Signals stored before the contract bounded them (or written straight into the database): a
payload nested 300–900 levels deep, a lone surrogate, 10 MB, 200 000 keys. Every route that
serves them answers, with the payload cut and marked ``payload_truncated``, text that is not
Unicode replaced, and never more than about :data:`api.stored.MAX_BYTES` of payload.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from api.stored import MAX_BYTES, MAX_DEPTH, TRUNCATED, safe_json
from om_core.signals.contract import InvalidSignal, parse_signal
from tests.api.conftest import READ_KEY, TRADE_KEY, Api, order_row

HTML = {"Accept": "text/html"}


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


#: Raw JSON text as a JSON column may hold it (an escaped lone surrogate is valid JSON text).
HOSTILE = {
    "deep-300": '{"symbol":"BTCUSDT","metadata":' + _deep(300) + "}",
    "deep-900": '{"symbol":"BTCUSDT","metadata":' + _deep(900) + "}",
    "deep-list": '{"metadata":' + "[" * 900 + "]" * 900 + "}",
    "surrogate": '{"symbol":"BTCUSDT","metadata":{"note":"\\ud800","\\udfff":"key"}}',
    "large": json.dumps({"metadata": {"blob": "x" * 10_000_000}}),
    "many-keys": json.dumps({"metadata": {f"k{n}": n for n in range(200_000)}}),
    "not-an-object": '"just a string"',
}
REASONS = '[{"plugin":"risk","code":"X","message":"\\ud800","details":' + _deep(900) + "}]"


async def _store(api: Api, signal_id: str, payload: str, reasons: str = "[]") -> None:
    now = datetime.now(UTC)
    async with api.stack.service.sessions() as session, session.begin():
        connection = await session.connection()
        await connection.execute(
            sa.text(
                "INSERT INTO signals (signal_id, symbol, side, category, status, reasons, "
                "payload, received_at, updated_at) VALUES (:id, 'BTCUSDT', 'buy', 'linear', "
                "'placed', CAST(:reasons AS json), CAST(:payload AS json), :now, :now)"
            ),
            {"id": signal_id, "payload": payload, "reasons": reasons, "now": now},
        )


@pytest.fixture
async def hostile(api: Api) -> dict[str, int]:
    """Every hostile signal stored, each with an order; signal id → order id."""
    orders = {}
    start = datetime.now(UTC) - timedelta(minutes=1)
    for n, (signal_id, payload) in enumerate(HOSTILE.items()):
        await _store(api, signal_id, payload, REASONS if signal_id == "deep-300" else "[]")
        row = order_row(start + timedelta(seconds=n), signal_id=signal_id)
        await api.add([row])
        assert row.id is not None
        orders[signal_id] = row.id
    return orders


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, dict | list) and value:
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
        depth += 1
    return depth


async def test_each_stored_signal_is_served(api: Api, hostile: dict[str, int]) -> None:
    for signal_id, order_id in hostile.items():
        response = await api.get(f"/api/v1/signals/{signal_id}")
        assert response.status_code == 200, (signal_id, response.text[:500])
        body = response.json()
        assert len(response.content) < 2 * MAX_BYTES, signal_id
        assert body["payload_truncated"] is True, signal_id
        assert _depth(body["payload"]) <= MAX_DEPTH + 1
        assert [o["id"] for o in body["orders"]] == [order_id]

        detail = await api.get(f"/api/v1/orders/{order_id}")
        assert detail.status_code == 200, (signal_id, detail.text[:500])
        assert detail.json()["signal"]["payload_truncated"] is True


async def test_what_is_cut_is_marked_and_the_rest_kept(api: Api, hostile: dict[str, int]) -> None:
    surrogate = (await api.get("/api/v1/signals/surrogate")).json()
    # Lone surrogates cannot be sent as UTF-8: replaced (and marked, above).
    assert surrogate["payload"]["metadata"] == {"note": "\ufffd", "\ufffd": "key"}

    deep = (await api.get("/api/v1/signals/deep-900")).json()["payload"]
    assert deep["symbol"] == "BTCUSDT"
    assert TRUNCATED in json.dumps(deep, ensure_ascii=False)

    large = (await api.get("/api/v1/signals/large")).json()["payload"]
    assert large["metadata"]["blob"].endswith(TRUNCATED)
    assert len(large["metadata"]["blob"]) < MAX_BYTES

    assert (await api.get("/api/v1/signals/not-an-object")).json()["payload"] == {}

    reasons = (await api.get("/api/v1/signals/deep-300")).json()["reasons"]
    assert reasons[0]["message"] == "\ufffd"
    assert _depth(reasons[0]["details"]) <= MAX_DEPTH + 1


async def test_lists_console_and_preview_answer(api: Api, hostile: dict[str, int]) -> None:
    listed = await api.get("/api/v1/signals", limit=100)
    assert listed.status_code == 200, listed.text[:500]
    assert {i["signal_id"] for i in listed.json()["items"]} == set(HOSTILE)
    orders = await api.get("/api/v1/orders", limit=100)
    assert orders.status_code == 200, orders.text[:500]

    # Preview a signal that reuses each stored id, with a hostile body of its own.
    for signal_id in HOSTILE:
        head = f'{{"signal_id":"{signal_id}","symbol":"BTCUSDT","side":"buy","qty":"0.01"'
        for body in (
            head + ',"metadata":' + _deep(900) + "}",
            head + ',"metadata":{"n":"\\ud800"}}',
        ):
            response = await api.client.post(
                "/api/v1/orders/preview",
                content=body.encode(),
                headers={"X-API-Key": TRADE_KEY, "Content-Type": "application/json"},
            )
            assert response.status_code < 500, (signal_id, response.text[:500])
            assert response.json(), signal_id

    client = api.client
    form = await client.get("/console/login", headers=HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    signed_in = await client.post(
        "/console/login", data={"api_key": READ_KEY, "csrf_token": token.group(1), "next": "/"}
    )
    assert signed_in.status_code == 303, signed_in.text[:300]
    for page in ("/", "/console/fragments/signals", "/console/fragments/orders"):
        response = await client.get(page, headers=HTML)
        assert response.status_code == 200, (page, response.text[:500])


def test_the_walk_is_bounded_and_copies() -> None:
    value: object = 1
    for _ in range(5000):  # deeper than the interpreter's recursion limit
        value = [value]
    served = safe_json(value)
    assert served.truncated and _depth(served.value) == MAX_DEPTH
    # PostgreSQL's json refuses NaN, SQLite's does not: served as strings, marked.
    nan = safe_json({"x": float("nan"), "y": float("inf")})
    assert nan.value == {"x": "nan", "y": "inf"} and nan.truncated
    plain = safe_json({"a": [1, "b", None, True, 1.5]})
    assert plain.value == {"a": [1, "b", None, True, 1.5]} and not plain.truncated


def _contract_refuses(body: str) -> bool:
    try:
        parse_signal(body.encode())
    except InvalidSignal:
        return True
    return False


_SURROGATE_ID = '{"signal_id":"\\ud800","symbol":"BTCUSDT","side":"buy","qty":"0.01"}'


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            _SURROGATE_ID,
            # The id is looked up before anything else; the signal contract (issue 14, build
            # item 2) refuses lone surrogates, so it never reaches the database.
            marks=pytest.mark.skipif(
                not _contract_refuses(_SURROGATE_ID),
                reason="the signal contract does not refuse lone surrogates yet",
            ),
        ),
        '{"signal_id":"p-1","symbol":"\\ud800","side":"buy","qty":"0.01"}',
        '{"signal_id":"p-2","symbol":"BTCUSDT","side":"\\udfff","qty":"\\ud800"}',
        '{"signal_id":"p-3","symbol":"BTCUSDT","side":"buy","qty":' + _deep(900) + "}",
        '{"signal_id":' + _deep(900) + "}",
        "[" * 100_000 + "]" * 100_000,
        '{"signal_id":"p-4","symbol":"BTCUSDT","side":"buy","qty":"1e999999"}',
        '"\\ud800"',
    ],
)
async def test_preview_answers_hostile_bodies(api: Api, body: str) -> None:
    response = await api.client.post(
        "/api/v1/orders/preview",
        content=body.encode(),
        headers={"X-API-Key": TRADE_KEY, "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text[:500]
    assert response.json()
