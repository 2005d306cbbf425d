"""GET /api/v1/signals/{signal_id}: outcome, every rejection reason, the orders."""

from __future__ import annotations

from tests.api.conftest import Api, error_code, signal


async def test_a_placed_signal_with_its_order(api: Api) -> None:
    signal_id = "trend/2026-01-05T10:00:00Z/BTC"  # slashes and colons are fine in ids
    await api.stack.publish(signal(signal_id, price="30000", strategy_id="trend"))
    assert (await api.stack.outcome(signal_id)).status == "placed"
    [order] = await api.stack.orders(signal_id)

    response = await api.get(f"/api/v1/signals/{signal_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["signal_id"], body["status"], body["reasons"]) == (signal_id, "placed", [])
    assert (body["symbol"], body["side"], body["category"]) == ("BTCUSDT", "buy", "linear")
    assert body["payload"]["strategy_id"] == "trend"
    assert [o["id"] for o in body["orders"]] == [order.id]
    assert body["orders"][0]["client_order_id"] == order.client_order_id
    assert body["orders"][0]["price"] == "30000"


async def test_a_rejected_signal_with_every_reason(api: Api) -> None:
    halted = await api.put("/api/v1/trading-state", {"state": "halted", "reason": "test"})
    assert halted.status_code == 200
    # Too weak as well as halted: both reasons are kept.
    await api.stack.publish(signal("s-rejected", strength="0.01"))
    assert (await api.stack.outcome("s-rejected")).status == "rejected"

    body = (await api.get("/api/v1/signals/s-rejected")).json()
    assert body["status"] == "rejected" and body["orders"] == []
    codes = {r["code"] for r in body["reasons"]}
    assert "TRADING_HALTED" in codes
    halted_reason = next(r for r in body["reasons"] if r["code"] == "TRADING_HALTED")
    # The engine's, not the risk plugin's: it holds whatever plugins are enabled.
    assert halted_reason["plugin"] == "engine" and halted_reason["message"]
    assert halted_reason["details"] == {"trading_state": "halted"}


async def test_unknown_signals_are_404(api: Api) -> None:
    for signal_id in ("nope", "x" * 300, "a%00b"):
        response = await api.get(f"/api/v1/signals/{signal_id}")
        assert response.status_code == 404, response.text
        assert error_code(response) == "signal_not_found"
