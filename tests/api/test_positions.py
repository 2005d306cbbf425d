"""GET /api/v1/positions (with unrealized PnL) and /positions/{symbol}/snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from om_core.db.models import Position, PositionSnapshot
from tests.api.conftest import Api, error_code

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def position(symbol: str, size: str, entry: str, *, mark: str | None = None, **kw: Any) -> Position:
    return Position(
        category=kw.pop("category", "linear"),
        symbol=symbol,
        size=Decimal(size),
        avg_entry_price=Decimal(entry),
        realized_pnl=Decimal("12.5"),
        fees_paid=Decimal("1.25"),
        mark_price=None if mark is None else Decimal(mark),
        **kw,
    )


def by_symbol(response: Any) -> dict[tuple[str, str], dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {(p["symbol"], p["category"]): p for p in response.json()["items"]}


async def test_open_positions_with_unrealized_pnl(api: Api) -> None:
    await api.stack.paper.set_price("ETHUSDT", Decimal("2900"))
    await api.add(
        [
            position("BTCUSDT", "0.5", "50000", mark="52000"),  # long, stored mark
            position("ETHUSDT", "-2", "3000"),  # short, priced by the exchange
            position("SOLUSDT", "0", "0"),  # flat
            position("XYZUSDT", "1", "10"),  # the exchange does not list it
            position("BTCUSD", "100", "50000", mark="40000", category="inverse"),
        ]
    )
    listed = by_symbol(await api.get("/api/v1/positions"))
    assert set(listed) == {
        ("BTCUSDT", "linear"),
        ("ETHUSDT", "linear"),
        ("XYZUSDT", "linear"),
        ("BTCUSD", "inverse"),
    }
    btc = listed["BTCUSDT", "linear"]
    assert (btc["size"], btc["avg_entry_price"], btc["mark_price"]) == ("0.5", "50000", "52000")
    assert Decimal(btc["unrealized_pnl"]) == Decimal("1000")
    assert (btc["realized_pnl"], btc["fees_paid"]) == ("12.5", "1.25")
    eth = listed["ETHUSDT", "linear"]
    assert eth["mark_price"] == "2900" and Decimal(eth["unrealized_pnl"]) == Decimal("200")
    unpriced = listed["XYZUSDT", "linear"]
    assert unpriced["mark_price"] is None and unpriced["unrealized_pnl"] is None
    # Inverse: 100 contracts × (1/50000 − 1/40000), in BTC.
    assert Decimal(listed["BTCUSD", "inverse"]["unrealized_pnl"]) == Decimal("-0.0005")

    everything = by_symbol(await api.get("/api/v1/positions", include_closed="true"))
    assert everything["SOLUSDT", "linear"]["size"] == "0"
    assert len(everything) == 5


async def test_snapshots_newest_first_with_time_filter_and_pages(api: Api) -> None:
    btc = position("BTCUSDT", "0.5", "50000")
    spot = position("BTCUSDT", "1", "50000", category="spot")
    await api.add([btc, spot])
    assert btc.id is not None and spot.id is not None

    def snap(pos: Position, minutes: int) -> PositionSnapshot:
        assert pos.id is not None
        return PositionSnapshot(
            position_id=pos.id,
            category=pos.category,
            symbol=pos.symbol,
            size=Decimal(minutes),
            avg_entry_price=Decimal("50000"),
            realized_pnl=Decimal(0),
            fees_paid=Decimal(0),
            mark_price=Decimal("50100"),
            unrealized_pnl=Decimal("0.05") * minutes,
            reason="periodic",
            created_at=T0 + timedelta(minutes=minutes),
        )

    await api.add([snap(btc, m) for m in range(7)] + [snap(spot, 3)])
    url = "/api/v1/positions/btcusdt/snapshots"

    everything = (await api.get(url)).json()
    assert [s["size"] for s in everything["items"]] == ["6", "5", "4", "3", "2", "1", "0"]
    assert everything["items"][0]["unrealized_pnl"] == "0.3"
    assert everything["next_cursor"] is None

    window = {"from": (T0 + timedelta(minutes=2)).isoformat(), "to": "2026-01-05T11:05:00+01:00"}
    filtered = (await api.get(url, **window)).json()
    assert [s["size"] for s in filtered["items"]] == ["4", "3", "2"]

    first = (await api.get(url, limit=2, **window)).json()
    assert [s["size"] for s in first["items"]] == ["4", "3"]
    second = (await api.get(url, limit=2, cursor=first["next_cursor"], **window)).json()
    assert [s["size"] for s in second["items"]] == ["2"] and second["next_cursor"] is None

    spot_only = (await api.get(url, category="spot")).json()
    assert [(s["category"], s["size"]) for s in spot_only["items"]] == [("spot", "3")]
    assert (await api.get("/api/v1/positions/SOLUSDT/snapshots")).json()["items"] == []

    naive = await api.get(url, **{"from": "2026-01-05T10:00:00"})
    assert naive.status_code == 422
    assert [d["field"] for d in naive.json()["error"]["details"]] == ["query.from"]
    bad_symbol = await api.get("/api/v1/positions/BTC%20USDT/snapshots")
    assert bad_symbol.status_code == 422 and error_code(bad_symbol) == "validation_error"
    orders_cursor = (await api.get(url, limit=1)).json()["next_cursor"]
    assert (await api.get("/api/v1/orders", cursor=orders_cursor)).status_code == 400
