"""Observation 8 of issue 14: a cancel goes through the core — recorded, idempotent, with an
event and a metric — from the API and from the console alike (PostgreSQL; events over
RabbitMQ where they are checked)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from om_core import metrics
from om_core.db.models import CancelRequest, Order
from om_core.orders.cancel import PENDING_TIMEOUT
from om_plugins import Category, ExchangeUnavailable, OutcomeUnknown
from tests.api.conftest import TRADE_KEY, Api, api_for, error_code, order_row, signal
from tests.conftest import wait_for

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
HTML = {"Accept": "text/html"}


def cancels(outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value("om_order_cancels_total", {"outcome": outcome})
    return value or 0.0


async def requests_of(api: Api, order_id: int) -> list[CancelRequest]:
    async with api.stack.service.sessions() as session:
        rows = await session.exec(
            select(CancelRequest)
            .where(col(CancelRequest.order_id) == order_id)
            .order_by(col(CancelRequest.id))
        )
        return list(rows.all())


async def resting(api: Api, signal_id: str) -> Order:
    """A buy far below the price: it rests, open, on the paper exchange."""
    await api.stack.publish(signal(signal_id, price="30000"))
    assert (await api.stack.outcome(signal_id)).status == "placed"
    [order] = await api.stack.orders(signal_id)
    return order


class HeldCancels:
    """The exchange's cancel, held until released, and never cancelling: the request stays
    ``pending`` while held and ``accepted`` after, with the order still open."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, _category: Category, _symbol: str, client_order_id: str) -> None:
        self.calls.append(client_order_id)
        await self.release.wait()


@pytest.fixture
async def servers_api(server_urls: tuple[str, str]) -> AsyncIterator[Api]:
    async with api_for(*server_urls) as value:
        yield value


async def test_a_cancel_is_recorded_published_and_counted(servers_api: Api) -> None:
    api = servers_api
    order = await resting(api, "c-rest")
    await api.stack.events(1, types={"order.created"})
    accepted_before, not_open_before = cancels("accepted"), cancels("not_open")

    response = await api.post(f"/api/v1/orders/client:{order.client_order_id}/cancel")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["id"] == order.id and body["duplicate"] is False
    request = body["cancel_request"]
    assert request["state"] == "accepted" and request["requested_by"].startswith("api-key:")
    assert TRADE_KEY not in response.text
    assert request["completed_at"] is not None and request["reject_code"] is None

    [row] = await requests_of(api, order.id or 0)
    assert (row.id, row.state, row.client_order_id) == (
        request["id"],
        "accepted",
        order.client_order_id,
    )
    assert cancels("accepted") == accepted_before + 1

    events = await api.stack.events(
        3, types={"order.cancel_requested", "order.cancel_accepted", "order.cancelled"}
    )
    assert [e["event_type"] for e in events] == [
        "order.cancel_requested",
        "order.cancel_accepted",
        "order.cancelled",
    ]
    requested, answered, cancelled = events
    assert requested["cancel"]["state"] == "pending" and requested["cancel"]["id"] == row.id
    assert requested["signal_id"] == "c-rest" and requested["order"]["id"] == order.id
    assert answered["cancel"]["state"] == "accepted"
    assert cancelled["order"]["status"] == "cancelled"

    # Cancelling a final order answers clearly, names the request that cancelled it, records
    # and sends nothing.
    again = await api.post(f"/api/v1/orders/{order.id}/cancel")
    assert again.status_code == 409 and error_code(again) == "order_not_open"
    assert again.json()["error"]["details"] == {"status": "cancelled", "cancel_request_id": row.id}
    assert len(await requests_of(api, order.id or 0)) == 1
    assert cancels("not_open") == not_open_before + 1


async def test_a_second_cancel_while_one_stands_does_not_ask_the_exchange_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await resting(api, "c-twice")
    held = HeldCancels()
    monkeypatch.setattr(api.stack.paper, "cancel_order", held)
    duplicates_before = cancels("duplicate")

    first = asyncio.create_task(api.post(f"/api/v1/orders/{order.id}/cancel"))
    await wait_for(lambda: held.calls == [order.client_order_id], message="the exchange asked")
    [pending] = await requests_of(api, order.id or 0)
    assert pending.state == "pending"

    second = await api.post(f"/api/v1/orders/{order.id}/cancel")
    assert second.status_code == 202, second.text
    assert second.json()["duplicate"] is True
    assert second.json()["cancel_request"]["id"] == pending.id
    assert second.json()["cancel_request"]["state"] == "pending"

    held.release.set()
    answered = await first
    assert answered.status_code == 202 and answered.json()["cancel_request"]["id"] == pending.id
    # Accepted, the order not cancelled yet: still the same request.
    third = await api.post(f"/api/v1/orders/{order.id}/cancel")
    assert third.json()["duplicate"] is True
    assert third.json()["cancel_request"]["state"] == "accepted"

    assert held.calls == [order.client_order_id]
    assert [r.state for r in await requests_of(api, order.id or 0)] == ["accepted"]
    assert cancels("duplicate") == duplicates_before + 2


async def test_a_pending_request_left_by_a_dead_process_is_superseded(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await resting(api, "c-orphan")
    assert order.id is not None
    old = datetime.now(UTC) - PENDING_TIMEOUT - timedelta(seconds=1)
    await api.add(
        [
            CancelRequest(
                order_id=order.id,
                client_order_id=order.client_order_id,
                state="pending",
                requested_by="api-key:dead",
                requested_at=old,
            )
        ]
    )
    response = await api.post(f"/api/v1/orders/{order.id}/cancel")
    assert response.status_code == 202 and response.json()["duplicate"] is False
    orphan, fresh = await requests_of(api, order.id)
    assert (orphan.state, orphan.reject_code) == ("unknown", "OUTCOME_UNKNOWN")
    assert fresh.state == "accepted" and fresh.id == response.json()["cancel_request"]["id"]


async def test_a_refused_cancel_keeps_the_exchanges_codes(api: Api) -> None:
    # Open in our books, unknown to the exchange (as after a missed update).
    stray = order_row(T0, status="new")
    await api.add([stray])
    rejected_before = cancels("rejected")
    response = await api.post(f"/api/v1/orders/{stray.id}/cancel")
    assert response.status_code == 409, response.text
    assert error_code(response) == "exchange_rejected"
    [row] = await requests_of(api, stray.id or 0)
    assert response.json()["error"]["details"] == {
        "exchange_code": "110001",
        "reject_code": "ORDER_NOT_FOUND",
        "cancel_request_id": row.id,
    }
    assert (row.state, row.reject_code, row.exchange_code) == (
        "rejected",
        "ORDER_NOT_FOUND",
        "110001",
    )
    assert row.message and row.completed_at is not None
    assert cancels("rejected") == rejected_before + 1
    # A refused request does not stand: asking again asks the exchange again.
    await api.post(f"/api/v1/orders/{stray.id}/cancel")
    assert [r.state for r in await requests_of(api, stray.id or 0)] == ["rejected", "rejected"]

    await api.stack.outbox_drained()
    failed = [e for e in await api.stack.all_events() if e["event_type"] == "order.cancel_failed"]
    assert [e["cancel"]["reject_code"] for e in failed] == ["ORDER_NOT_FOUND"] * 2


async def test_unreachable_and_lost_answers_are_recorded(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = order_row(T0, status="new")
    await api.add([order])
    failures: list[Exception] = [
        ExchangeUnavailable("connection refused", code="ECONNREFUSED", retry_after=1.5),
        OutcomeUnknown("read timeout"),
    ]

    async def failing_cancel(*_args: Any) -> None:
        raise failures.pop(0)

    monkeypatch.setattr(api.stack.paper, "cancel_order", failing_cancel)
    before = cancels("unavailable"), cancels("unknown")
    unavailable = await api.post(f"/api/v1/orders/{order.id}/cancel")
    assert unavailable.status_code == 503 and error_code(unavailable) == "exchange_unavailable"
    unknown = await api.post(f"/api/v1/orders/{order.id}/cancel")
    assert unknown.status_code == 503 and error_code(unknown) == "exchange_outcome_unknown"
    rows = await requests_of(api, order.id or 0)
    assert [(r.state, r.reject_code, r.exchange_code) for r in rows] == [
        ("unavailable", "EXCHANGE_UNAVAILABLE", "ECONNREFUSED"),
        ("unknown", "OUTCOME_UNKNOWN", None),
    ]
    assert (cancels("unavailable"), cancels("unknown")) == (before[0] + 1, before[1] + 1)


# -- the console's cancel ----------------------------------------------------------------------


def _csrf(page: str) -> str:
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def _signed_in(client: httpx.AsyncClient) -> dict[str, str]:
    form = await client.get("/console/login", headers=HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    signed = await client.post(
        "/console/login", data={"api_key": TRADE_KEY, "csrf_token": token.group(1), "next": "/"}
    )
    assert signed.status_code == 303
    return {"X-CSRF-Token": _csrf((await client.get("/", headers=HTML)).text)}


async def test_the_consoles_cancel_goes_through_the_core(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await resting(api, "c-console")
    held = HeldCancels()
    held.release.set()
    monkeypatch.setattr(api.stack.paper, "cancel_order", held)
    headers = await _signed_in(api.client)

    sent = await api.client.post(f"/console/orders/{order.id}/cancel", headers=headers)
    assert sent.status_code == 202, sent.text
    [row] = await requests_of(api, order.id or 0)
    assert row.state == "accepted" and row.requested_by.startswith("api-key:")
    assert f"request #{row.id}" in sent.text

    again = await api.client.post(f"/console/orders/{order.id}/cancel", headers=headers)
    assert again.status_code == 202 and "already requested" in again.text
    assert held.calls == [order.client_order_id]
    assert len(await requests_of(api, order.id or 0)) == 1
