"""GET/PUT /api/v1/trading-state: persisted, announced as an event, enforced on signals."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from typing import Any

import pytest

from om_core.db.models import TradingStateRow
from tests.api.conftest import TRADE_KEY, Api, api_for, error_code, signal

CHANGED = {"trading_state.changed"}


async def test_halting_persists_emits_an_event_and_rejects_signals(
    pg_url: str, amqp_url: str
) -> None:
    async with api_for(pg_url, amqp_url) as api:
        initial = (await api.get("/api/v1/trading-state")).json()
        assert initial == {"state": "active", "reason": "", "updated_at": None}

        body = {"state": "halted", "reason": "  exchange maintenance  "}
        response = await api.put("/api/v1/trading-state", body)
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "halted"
        assert response.json()["reason"] == "exchange maintenance"
        assert response.json()["updated_at"] is not None

        assert (await api.get("/api/v1/trading-state")).json() == response.json()
        async with api.stack.service.sessions() as session:
            row = await session.get(TradingStateRow, 1)
        assert row is not None and (row.state, row.reason) == ("halted", "exchange maintenance")

        [event] = await api.stack.events(1, types=CHANGED)
        assert event["signal_id"] is None and event["order"] is None
        fingerprint = hashlib.sha256(TRADE_KEY.encode()).hexdigest()[:8]
        assert event["trading_state"] == {
            "state": "halted",
            "previous_state": "active",
            "reason": "exchange maintenance",
            "actor": f"api-key:{fingerprint}",
            "changed_at": row.updated_at.isoformat(),
        }

        await api.stack.publish(signal("s-after-halt"))
        rejected = await api.stack.outcome("s-after-halt")
        assert rejected.status == "rejected"
        assert "TRADING_HALTED" in [r["code"] for r in rejected.reasons]
        assert api.stack.paper.create_calls == []

        # The same state and reason again changes nothing: the next event is the next change.
        same = await api.put("/api/v1/trading-state", {"state": "halted", "reason": body["reason"]})
        assert same.json() == response.json()
        await api.put("/api/v1/trading-state", {"state": "reducing", "reason": "winding down"})
        [event] = await api.stack.events(1, types=CHANGED)
        assert event["trading_state"]["previous_state"] == "halted"
        assert event["trading_state"]["state"] == "reducing"

        await api.put("/api/v1/trading-state", {"state": "active", "reason": "done"})
        await api.stack.publish(signal("s-after-resume"))
        assert (await api.stack.outcome("s-after-resume")).status == "placed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"state": "halted"}, "body.reason"),
        ({"state": "halted", "reason": ""}, "body.reason"),
        ({"state": "halted", "reason": "   "}, "body.reason"),
        ({"state": "halted", "reason": "x" * 501}, "body.reason"),
        ({"state": "halted", "reason": "a\x00b"}, "body.reason"),
        ({"state": "paused", "reason": "x"}, "body.state"),
        ({"state": "halted", "reason": "x", "until": "later"}, "body.until"),
        (["halted"], "body"),
        (None, "body"),
    ],
)
async def test_invalid_changes_are_422_naming_the_field(api: Api, body: Any, field: str) -> None:
    response = await api.put("/api/v1/trading-state", body)
    assert response.status_code == 422, response.text
    assert error_code(response) == "validation_error"
    assert field in [d["field"] for d in response.json()["error"]["details"]]
    assert (await api.get("/api/v1/trading-state")).json()["state"] == "active"


async def test_malformed_json_is_422(api: Api) -> None:
    response = await api.client.put(
        "/api/v1/trading-state",
        content=b'{"state": "halted", ',
        headers={"X-API-Key": TRADE_KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 422 and error_code(response) == "validation_error"


async def test_a_read_key_cannot_change_it(api: Api) -> None:
    response = await api.put(
        "/api/v1/trading-state", {"state": "halted", "reason": "x"}, key="read"
    )
    assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    assert (await api.get("/api/v1/trading-state")).json()["state"] == "active"


async def test_concurrent_changes_apply_one_after_the_other(api: Api) -> None:
    states = ["halted", "reducing", "active", "halted", "reducing"]
    responses = await asyncio.gather(
        *(
            api.put("/api/v1/trading-state", {"state": s, "reason": f"r{n}"})
            for n, s in enumerate(states)
        )
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    events = await api.stack.events(len(states), types=CHANGED)
    # Each event's previous state is the state the one before it set: none was lost.
    chain = [e["trading_state"] for e in events]
    assert chain[0]["previous_state"] == "active"
    for before, after in itertools.pairwise(chain):
        assert after["previous_state"] == before["state"]
    final = (await api.get("/api/v1/trading-state")).json()
    assert (final["state"], final["reason"]) == (chain[-1]["state"], chain[-1]["reason"])
