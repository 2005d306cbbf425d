"""GET /api/v1/orders (filters, keyset pages), GET /orders/{id}, POST /orders/{id}/cancel."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import col, select

from api.pagination import encode_cursor
from om_core.db.models import Order
from om_plugins.errors import ExchangeUnavailable, OutcomeUnknown
from tests.api.conftest import Api, api_for, error_code, order_row, signal
from tests.conftest import wait_for

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

ITEM_FIELDS = {
    "id",
    "client_order_id",
    "exchange_order_id",
    "signal_id",
    "symbol",
    "category",
    "side",
    "order_type",
    "time_in_force",
    "reduce_only",
    "qty",
    "qty_unit",
    "price",
    "status",
    "filled_qty",
    "avg_fill_price",
    "cum_fee",
    "fees",
    "reject_code",
    "reject_reason",
    "exchange_code",
    "exchange_message",
    "is_external",
    "created_at",
    "updated_at",
}


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def stored_status(api: Api, client_order_id: str, status: str) -> Order:
    async def reached() -> Order | None:
        async with api.stack.service.sessions() as session:
            order = (
                await session.exec(
                    select(Order).where(col(Order.client_order_id) == client_order_id)
                )
            ).one()
        return order if order.status == status else None

    return await wait_for(reached, message=f"order {client_order_id} {status}")


# -- listing -----------------------------------------------------------------------------------


async def test_filters_combine_and_items_carry_every_field(api: Api) -> None:
    a = order_row(T0, symbol="BTCUSDT", status="new", side="buy", signal_id="s-a")
    b = order_row(T0 + timedelta(minutes=1), symbol="ETHUSDT", status="filled", side="sell")
    b.signal_id = "s-b"
    c = order_row(
        T0 + timedelta(minutes=2),
        status="cancelled",
        side="sell",
        category="spot",
        is_external=True,
    )
    d = order_row(T0 + timedelta(minutes=3), status="filled", order_type="market")
    await api.add([a, b, c, d])

    everything = await api.get("/api/v1/orders")
    assert ids(everything) == [d.id, c.id, b.id, a.id]
    assert everything.json()["next_cursor"] is None

    cases: list[tuple[dict[str, Any], list[int | None]]] = [
        ({"symbol": "btcusdt"}, [d.id, c.id, a.id]),
        ({"status": "filled"}, [d.id, b.id]),
        ({"status": ["filled", "cancelled"]}, [d.id, c.id, b.id]),
        ({"side": "sell"}, [c.id, b.id]),
        ({"signal_id": "s-b"}, [b.id]),
        ({"category": "spot"}, [c.id]),
        (
            {"created_from": b.created_at.isoformat(), "created_to": d.created_at.isoformat()},
            [c.id, b.id],
        ),
        ({"created_from": "2026-01-05T11:01:00+01:00"}, [d.id, c.id, b.id]),
        ({"symbol": "BTCUSDT", "status": "new", "side": "buy"}, [a.id]),
        ({"symbol": "SOLUSDT"}, []),
    ]
    for params, expected in cases:
        assert ids(await api.get("/api/v1/orders", **params)) == expected, params

    item = next(i for i in everything.json()["items"] if i["id"] == c.id)
    assert set(item) == ITEM_FIELDS
    assert item["qty"] == "0.01" and item["price"] == "50000.5"  # decimals as strings
    assert item["is_external"] is True and item["signal_id"] is None
    assert item["category"] == "spot" and item["time_in_force"] == "GTC"
    assert datetime.fromisoformat(item["created_at"]) == c.created_at


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"created_from": "2026-01-05T10:00:00"}, "query.created_from"),
        ({"created_to": "2026-01-05 10:00"}, "query.created_to"),
        ({"created_from": "yesterday"}, "query.created_from"),
        ({"created_from": "9999-12-31T23:59:59-05:00"}, "query.created_from"),
        ({"created_to": "0001-01-01T00:30:00+01:00"}, "query.created_to"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"limit": "ten"}, "query.limit"),
        ({"status": "done"}, "query.status.0"),
        ({"side": "long"}, "query.side"),
        ({"symbol": "BTC\x00USDT"}, "query.symbol"),
    ],
)
async def test_invalid_parameters_are_422_naming_the_field(
    api: Api, params: dict[str, Any], field: str
) -> None:
    response = await api.get("/api/v1/orders", **params)
    assert response.status_code == 422, response.text
    assert error_code(response) == "validation_error"
    assert field in [d["field"] for d in response.json()["error"]["details"]]


async def test_limit_defaults_to_100_and_allows_500(api: Api) -> None:
    await api.add(order_row(T0 + timedelta(milliseconds=n)) for n in range(520))
    default = await api.get("/api/v1/orders")
    assert len(ids(default)) == 100 and default.json()["next_cursor"]
    largest = await api.get("/api/v1/orders", limit=500)
    assert len(ids(largest)) == 500
    rest = await api.get("/api/v1/orders", limit=500, cursor=largest.json()["next_cursor"])
    assert len(ids(rest)) == 20 and rest.json()["next_cursor"] is None


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        # "" is the first page, as the schema allows (tests/api/test_edges.py)
        "!!!!",
        "abc",
        "o.1.2",  # not encoded
        _b64("o.1.2.3"),
        _b64("s.1767607200000000.5"),  # a snapshots cursor
        _b64("o.1767607200000000.9223372036854775808"),  # beyond BIGINT
        _b64("o.1767607200000000.99999999999999999999"),
        _b64("o.999999999999999999.1"),  # beyond the calendar
        _b64("o.1767607200000000.-4"),
        _b64("o.1767607200000000.4") + "===",
        _b64("o.1767607200000000.4")[:-1] + "\x00",
        "A" * 5000,
    ],
)
async def test_a_tampered_cursor_is_400(api: Api, cursor: str) -> None:
    response = await api.get("/api/v1/orders", cursor=cursor)
    assert response.status_code == 400, response.text
    assert error_code(response) == "invalid_cursor"


async def test_pages_hold_every_row_once_in_order_while_orders_are_inserted(
    db_url: str,
) -> None:
    # db_url: SQLite (embedded mode) and PostgreSQL.
    async with api_for(db_url) as api:
        # Three orders per second: pages of 40 end inside groups of equal created_at.
        original = [
            order_row(T0 + timedelta(seconds=n // 3), symbol=("BTCUSDT", "ETHUSDT")[n % 2])
            for n in range(250)
        ]
        await api.add(original)
        expected = {o.id: o for o in original}
        fresh: set[int | None] = set()
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 40}
            if cursor is not None:
                params["cursor"] = cursor
            if seen:
                # Committed between two pages, older than the cursor: the next pages show it.
                oldest_seen = datetime.fromisoformat(seen[-1]["created_at"])
                late = order_row(oldest_seen - timedelta(microseconds=1))
                await api.add([late])
                expected[late.id] = late
            # New orders arrive while the page is read.
            now_rows = [order_row(datetime.now(UTC)) for _ in range(3)]
            response, _ = await asyncio.gather(
                api.get("/api/v1/orders", **params), api.add(now_rows)
            )
            assert response.status_code == 200, response.text
            fresh.update(o.id for o in now_rows)
            page = response.json()
            seen.extend(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break

        listed = [item["id"] for item in seen]
        assert len(listed) == len(set(listed)), "an order was listed twice"
        keys = [(datetime.fromisoformat(i["created_at"]), i["id"]) for i in seen]
        assert keys == sorted(keys, reverse=True), "pages are not newest first"
        # Orders newer than the first page are not on later pages, only on a new first page.
        assert set(listed) - set(expected) <= fresh
        older = [i for i in listed if i in expected]
        want = sorted(expected, key=lambda i: (expected[i].created_at, i), reverse=True)
        assert older == want, "an order older than the cursor was skipped"
        assert pages >= 7


async def test_a_deep_cursor_starts_exactly_after_its_order(api: Api) -> None:
    rows = [order_row(T0 + timedelta(seconds=n)) for n in range(10)]
    await api.add(rows)
    pivot = rows[6]
    assert pivot.id is not None
    cursor = encode_cursor("o", pivot.created_at, pivot.id)
    assert ids(await api.get("/api/v1/orders", cursor=cursor)) == [r.id for r in rows[5::-1]]


# -- one order ---------------------------------------------------------------------------------


async def test_an_order_by_id_client_id_and_exchange_id_with_fills_and_signal(api: Api) -> None:
    await api.stack.publish(signal("s-market", strategy_id="trend"))
    assert (await api.stack.outcome("s-market")).status == "placed"
    [order] = await api.stack.orders("s-market")
    order = await stored_status(api, order.client_order_id, "filled")

    bodies = [
        (await api.get(f"/api/v1/orders/{ref}")).json()
        for ref in (
            str(order.id),
            f"client:{order.client_order_id}",
            f"exchange:{order.exchange_order_id}",
        )
    ]
    assert bodies[0] == bodies[1] == bodies[2]
    body = bodies[0]
    assert set(body) == ITEM_FIELDS | {"fills", "history", "signal"}
    # Every change, whichever path made it: the intent, the REST answer, the stream's fill.
    # The paper exchange streams the fill at once: when it is applied before the REST answer
    # is recorded, "submitted" is no change any more (a status never goes back).
    history = [(h["status"], Decimal(h["filled_qty"])) for h in body["history"]]
    assert history[0] == ("pending_submit", 0) and history[-1] == ("filled", Decimal("0.010"))
    assert history[1:-1] in ([], [("submitted", 0)]), history
    assert body["status"] == "filled" and body["signal_id"] == "s-market"
    assert [Decimal(f["qty"]) for f in body["fills"]] == [Decimal("0.010")]
    assert body["fills"][0]["price"] == body["avg_fill_price"]
    assert body["fills"][0]["fee_currency"] == "USDT" and body["fills"][0]["inferred"] is False
    assert body["fees"] == {"USDT": body["cum_fee"]}
    assert body["signal"]["status"] == "placed" and body["signal"]["reasons"] == []
    assert body["signal"]["payload"]["strategy_id"] == "trend"


@pytest.mark.parametrize(
    "ref",
    [
        "999999",
        "9" * 40,  # beyond BIGINT
        "-1",
        "1.5",
        "client:nope",
        "client:",
        "exchange:",
        "exchange:" + "x" * 500,
        "abc",
        "client:%00",
        "%F0%9F%92%A5",
    ],
)
async def test_unknown_orders_are_404(api: Api, ref: str) -> None:
    response = await api.get(f"/api/v1/orders/{ref}")
    assert response.status_code == 404, response.text
    assert error_code(response) == "order_not_found"
    cancel = await api.post(f"/api/v1/orders/{ref}/cancel")
    assert cancel.status_code == 404, cancel.text


# -- cancel ------------------------------------------------------------------------------------


async def test_cancel_a_resting_limit_order(api: Api) -> None:
    # A buy far below the price rests on the paper exchange.
    await api.stack.publish(signal("s-rest", price="30000"))
    assert (await api.stack.outcome("s-rest")).status == "placed"
    [order] = await api.stack.orders("s-rest")
    assert api.stack.paper.orders[order.client_order_id].is_open

    response = await api.post(f"/api/v1/orders/client:{order.client_order_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["id"] == order.id
    assert not api.stack.paper.orders[order.client_order_id].is_open
    # The outcome arrives through the order stream, as for any cancel.
    await stored_status(api, order.client_order_id, "cancelled")

    again = await api.post(f"/api/v1/orders/{order.id}/cancel")
    assert again.status_code == 409 and error_code(again) == "order_not_open"


async def test_cancel_a_filled_order_is_409(api: Api) -> None:
    await api.stack.publish(signal("s-filled"))
    assert (await api.stack.outcome("s-filled")).status == "placed"
    [order] = await api.stack.orders("s-filled")
    await stored_status(api, order.client_order_id, "filled")

    response = await api.post(f"/api/v1/orders/{order.id}/cancel")
    assert response.status_code == 409, response.text
    assert error_code(response) == "order_not_open"
    assert response.json()["error"]["details"] == {"status": "filled"}


async def test_cancel_refused_by_the_exchange_is_409_with_its_code(api: Api) -> None:
    # Open in our books, unknown to the exchange (as after a missed update).
    stray = order_row(T0, status="new")
    await api.add([stray])
    response = await api.post(f"/api/v1/orders/{stray.id}/cancel")
    assert response.status_code == 409, response.text
    assert error_code(response) == "exchange_rejected"
    details = response.json()["error"]["details"]
    assert (details["exchange_code"], details["reject_code"]) == ("110001", "ORDER_NOT_FOUND")


async def test_cancel_while_the_exchange_is_unreachable_is_503(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    resting = order_row(T0, status="new")
    await api.add([resting])
    failures: list[Exception] = [
        ExchangeUnavailable("connection refused", code="ECONNREFUSED", retry_after=1.5),
        OutcomeUnknown("read timeout"),
    ]

    async def failing_cancel(*_args: Any) -> None:
        raise failures.pop(0)

    # The exchange is the boundary faked here: the paper exchange cannot fail a cancel.
    monkeypatch.setattr(api.stack.paper, "cancel_order", failing_cancel)
    unavailable = await api.post(f"/api/v1/orders/{resting.id}/cancel")
    assert unavailable.status_code == 503, unavailable.text
    assert error_code(unavailable) == "exchange_unavailable"
    assert unavailable.headers["retry-after"] == "2"
    unknown = await api.post(f"/api/v1/orders/{resting.id}/cancel")
    assert unknown.status_code == 503 and error_code(unknown) == "exchange_outcome_unknown"
