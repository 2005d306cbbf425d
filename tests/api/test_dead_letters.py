"""Dead letters: kept in a table as either bus dead-letters them; listed, re-driven and
discarded through the API, with who and when."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from om_core.db.models import DeadLetterRecord
from om_core.messaging.base import ERROR_HEADER, dlq_name
from om_core.messaging.topology import SIGNALS_QUEUE
from tests.api.conftest import KEYS, Api, api_for, error_code, signal
from tests.conftest import wait_for

TRADE_ACTOR = "api-key:" + __import__("hashlib").sha256(KEYS["trade"].encode()).hexdigest()[:8]


@pytest.fixture
async def api_on(urls: tuple[str, str]) -> AsyncIterator[Api]:
    db_url, broker_url = urls
    async with api_for(db_url, broker_url) as value:
        yield value


async def _listed(api: Api, count: int, **params: object) -> list[dict[str, object]]:
    async def enough() -> list[dict[str, object]] | None:
        items: list[dict[str, object]] = (await api.get("/api/v1/dead-letters", **params)).json()[
            "items"
        ]
        return items if len(items) >= count else None

    return await wait_for(enough, message=f"{count} dead letters")


async def test_every_dead_lettered_message_is_kept_with_its_reason(api_on: Api) -> None:
    api = api_on
    await api.stack.service.bus.publish(
        SIGNALS_QUEUE, b"not json at all", message_id="m-1", headers={"x-source": "model-7"}
    )
    await api.stack.publish(signal("dl-bad", qty="abc"))
    items = await _listed(api, 2)
    newest, oldest = items
    assert oldest["message_id"] == "m-1" and oldest["queue"] == SIGNALS_QUEUE
    assert oldest["headers"] == {"x-source": "model-7"}
    assert oldest["body_preview"] == "not json at all" and oldest["body_size"] == 15
    assert "not valid JSON" in str(oldest["reason"]) and oldest["state"] == "pending"
    assert "qty" in str(newest["reason"])
    # The broker's dead-letter queue keeps its copy as before.
    dlq = dlq_name(SIGNALS_QUEUE)
    await wait_for(lambda: api.stack.service.bus.message_count(dlq), message="dlq copies")
    copy = await api.stack.next_message(dlq)
    assert copy.body == b"not json at all" and copy.headers[ERROR_HEADER]

    detail = (await api.get(f"/api/v1/dead-letters/{oldest['id']}")).json()
    assert detail["body_text"] == "not json at all"


async def test_redrive_after_a_fix_places_the_signal_and_records_who(api_on: Api) -> None:
    api = api_on
    body = json.dumps(signal("dl-valid", price="30000")).encode()
    row = DeadLetterRecord(
        queue=SIGNALS_QUEUE,
        message_id="dl-valid",
        content_type="application/json",
        headers={"x-source": "model-7", ERROR_HEADER: "delivery limit reached: db locked"},
        body=body,
        reason="delivery limit reached: OperationalError: database is locked",
        state="pending",
    )
    await api.add([row])
    response = await api.post(f"/api/v1/dead-letters/{row.id}/redrive")
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["state"] == "redriven" and out["resolved_by"] == TRADE_ACTOR
    assert out["resolved_at"] is not None
    assert (await api.stack.outcome("dl-valid")).status == "placed"

    again = await api.post(f"/api/v1/dead-letters/{row.id}/redrive")
    assert again.status_code == 409 and error_code(again) == "dead_letter_resolved"
    assert again.json()["error"]["details"] == {"state": "redriven"}
    assert len(await api.stack.orders("dl-valid")) == 1


async def test_a_message_that_fails_again_is_a_new_dead_letter(api_on: Api) -> None:
    api = api_on
    await api.stack.publish(signal("dl-again", qty="abc"))
    [first] = await _listed(api, 1)
    assert (await api.post(f"/api/v1/dead-letters/{first['id']}/redrive")).status_code == 200
    newest, oldest = await _listed(api, 2)
    assert oldest["id"] == first["id"] and oldest["state"] == "redriven"
    assert newest["state"] == "pending" and newest["message_id"] == first["message_id"]
    assert newest["headers"] == {"x-om-redriven-from": str(first["id"])}
    pending = (await api.get("/api/v1/dead-letters", state="pending")).json()["items"]
    assert [p["id"] for p in pending] == [newest["id"]]


async def test_discard_is_once_and_needs_the_trade_scope(api: Api) -> None:
    await api.stack.publish(b"\xff\xfe not utf-8")
    [item] = await _listed(api, 1)
    refused = await api.post(f"/api/v1/dead-letters/{item['id']}/discard", key="read")
    assert refused.status_code == 403
    done = await api.post(f"/api/v1/dead-letters/{item['id']}/discard")
    assert done.status_code == 200 and done.json()["state"] == "discarded"
    assert done.json()["resolved_by"] == TRADE_ACTOR
    again = await api.post(f"/api/v1/dead-letters/{item['id']}/redrive")
    assert again.status_code == 409 and again.json()["error"]["details"] == {"state": "discarded"}
    detail = (await api.get(f"/api/v1/dead-letters/{item['id']}")).json()
    assert detail["body_text"] is None and detail["body_base64"]
    missing = await api.post("/api/v1/dead-letters/999999/discard")
    assert missing.status_code == 404 and error_code(missing) == "dead_letter_not_found"
