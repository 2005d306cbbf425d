from __future__ import annotations

from decimal import Decimal

from sqlmodel import select

from om_core.db.models import Order, SignalRecord
from tests.api.conftest import TRADE_KEY, Api


async def test_preview_shows_the_exact_request_and_records_nothing(api: Api) -> None:
    body = (
        b'{"signal_id": "pv-1", "symbol": "BTCUSDT", "side": "buy", "qty": 0.0105,'
        b' "price": "59000.07"}'
    )
    response = await api.client.post(
        "/api/v1/orders/preview",
        content=body,
        headers={"X-API-Key": TRADE_KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["signal_id"] == "pv-1" and result["rejections"] == []
    sent = result["would_send"]
    assert (sent["side"], sent["order_type"]) == ("buy", "limit")
    assert Decimal(sent["qty"]) == Decimal("0.010")  # rounded down to the step
    assert Decimal(sent["price"]) == Decimal("59000.0")  # a buy never pays more than asked
    async with api.stack.service.sessions() as session:
        assert (await session.exec(select(Order))).all() == []
        assert (await session.exec(select(SignalRecord))).all() == []
    assert api.stack.paper.create_calls == []


async def test_preview_of_a_rejected_signal_lists_every_reason(api: Api) -> None:
    body = b'{"signal_id": "pv-2", "symbol": "BTCUSDT", "side": "buy", "qty": "0.00001"}'
    response = await api.client.post(
        "/api/v1/orders/preview", content=body, headers={"X-API-Key": TRADE_KEY}
    )
    assert response.status_code == 200
    result = response.json()
    assert result["would_send"] is None
    assert [r["code"] for r in result["rejections"]] == ["QTY_BELOW_MINIMUM"]


async def test_a_body_that_is_no_valid_signal_is_answered_with_its_problems(api: Api) -> None:
    for body in (b"not json", b"[1, 2]", b'{"signal_id": "pv-3", "symbol": "BTCUSDT"}'):
        response = await api.client.post(
            "/api/v1/orders/preview", content=body, headers={"X-API-Key": TRADE_KEY}
        )
        assert response.status_code == 200, body
        result = response.json()
        assert result["would_send"] is None
        assert {(r["plugin"], r["code"]) for r in result["rejections"]} == {
            ("engine", "INVALID_SIGNAL")
        }
