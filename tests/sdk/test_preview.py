"""Order preview: the exact request a signal would produce, computed by the service's own
pipeline and never sent — as a function for the API route and as ``om order preview``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from om_core.db.models import Position, SignalRecord
from om_core.orders.client_id import client_order_id
from om_core.tools.preview import ReadOnlyExchange, SendAttempted, preview
from om_plugins import Category, OrderRequest, OrderType, Side
from tests.flow.stack import running
from tests.sdk.cli import om

SIGNAL = {
    "signal_id": "pv-1",
    "symbol": "BTCUSDT",
    "side": "buy",
    "price": "59999.95",
    "notional": "1000",
    "take_profit": "65000",
}
WOULD_SEND = {
    "client_order_id": client_order_id("pv-1", 0),
    "symbol": "BTCUSDT",
    "category": "linear",
    "side": "buy",
    "order_type": "limit",
    "qty": "0.016",  # 1000 / 59999.9, rounded down to the 0.001 step
    "price": "59999.9",  # rounded down to the 0.10 tick: never pay more than asked
    "time_in_force": "GTC",
    "reduce_only": False,
    "position_idx": "0",
    "take_profit": "65000",
    "stop_loss": None,
}


async def test_preview_is_exactly_what_processing_then_sends(sqlite_url: str) -> None:
    async with running(sqlite_url, "memory://", consume=False) as stack:
        result = await preview(stack.service, SIGNAL)
        assert result == {"signal_id": "pv-1", "would_send": WOULD_SEND, "rejections": []}
        # Nothing was sent or recorded.
        assert stack.paper.create_calls == []
        async with stack.service.sessions() as session:
            assert await session.get(SignalRecord, 1) is None

        from om_core.signals.contract import parse_signal

        await stack.service.processor.process(parse_signal(SIGNAL), SIGNAL)
        (order,) = await stack.orders("pv-1")
        assert stack.paper.create_calls == [WOULD_SEND["client_order_id"]]
        sent = stack.paper.orders[order.client_order_id].request
        assert sent == OrderRequest(
            client_order_id=WOULD_SEND["client_order_id"],
            symbol="BTCUSDT",
            category=Category.LINEAR,
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            qty=Decimal("0.016"),
            price=Decimal("59999.9"),
            time_in_force=sent.time_in_force,
            take_profit=Decimal("65000"),
        )
        assert sent.time_in_force is not None and sent.time_in_force.value == "GTC"

        again = await preview(stack.service, SIGNAL)
        assert again["would_send"] is None
        assert [(r["plugin"], r["code"]) for r in again["rejections"]] == [
            ("engine", "DUPLICATE_SIGNAL")
        ]


async def test_preview_rejections_use_the_database_state(sqlite_url: str) -> None:
    config = {"risk": {"max_position_notional": "1000"}}
    async with running(sqlite_url, "memory://", consume=False, plugin_config=config) as stack:
        signal = {"signal_id": "pv-2", "symbol": "BTCUSDT", "side": "buy", "qty": "0.01"}
        assert (await preview(stack.service, signal))["would_send"]["qty"] == "0.01"
        async with stack.service.sessions() as session, session.begin():
            session.add(
                Position(
                    category="linear",
                    symbol="BTCUSDT",
                    size=Decimal("0.01"),
                    avg_entry_price=Decimal("60000"),
                )
            )
        result = await preview(stack.service, signal)
        assert result["would_send"] is None
        assert result["rejections"] == [
            {
                "plugin": "risk",
                "code": "MAX_POSITION_NOTIONAL",
                "message": "BTCUSDT position would be worth 1200.000, the limit is 1000",
                "details": {
                    "limit": "1000",
                    "actual": "1200.000",
                    "position_size": "0.01",
                    "position_size_after": "0.020",
                },
            }
        ]
        invalid = await preview(stack.service, {"signal_id": "pv-3", "symbol": "BTCUSDT"})
        assert invalid["signal_id"] == "pv-3" and invalid["would_send"] is None
        assert [r["code"] for r in invalid["rejections"]] == ["INVALID_SIGNAL"]
        unknown = await preview(stack.service, {**signal, "symbol": "NOPEUSDT"})
        assert [r["code"] for r in unknown["rejections"]] == ["INSTRUMENT_UNAVAILABLE"]
        assert stack.paper.create_calls == []


async def test_the_preview_exchange_refuses_to_send(sqlite_url: str) -> None:
    async with running(sqlite_url, "memory://", consume=False) as stack:
        read_only = ReadOnlyExchange(stack.paper)
        assert await read_only.get_reference_price(Category.LINEAR, "BTCUSDT") == Decimal(60000)
        request = OrderRequest(
            "x", "BTCUSDT", Category.LINEAR, Side.BUY, OrderType.MARKET, Decimal(1)
        )
        with pytest.raises(SendAttempted):
            await read_only.place_order(request)
        with pytest.raises(SendAttempted):
            await read_only.cancel_order(Category.LINEAR, "BTCUSDT", "x")
        assert stack.paper.create_calls == []


def test_om_order_preview_prints_the_request(tmp_path: Path) -> None:
    result = om(
        "order",
        "preview",
        "--signal",
        json.dumps(SIGNAL),
        cwd=tmp_path,
        OM_PLUGIN_PAPER_RANDOM_WALK="false",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "signal_id": "pv-1",
        "would_send": WOULD_SEND,
        "rejections": [],
        "state": "empty",
    }
    assert "previewing against an empty state" in result.stderr


def test_om_order_preview_reads_a_file_and_the_configured_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    assert om("db", "upgrade", cwd=tmp_path, OM_DATABASE_URL=url).returncode == 0
    signal_file = tmp_path / "signal.json"
    signal_file.write_text(json.dumps({**SIGNAL, "qty": "50"}))
    result = om(
        "order",
        "preview",
        "--signal",
        f"@{signal_file}",
        cwd=tmp_path,
        OM_DATABASE_URL=url,
        OM_PLUGIN_PAPER_RANDOM_WALK="false",
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["state"] == "database" and output["would_send"] is None
    assert [(r["plugin"], r["code"]) for r in output["rejections"]] == [
        ("risk", "MAX_ORDER_NOTIONAL")
    ]
    assert "note:" not in result.stderr


def test_om_order_preview_of_an_invalid_signal(tmp_path: Path) -> None:
    result = om("order", "preview", "--signal", '{"signal_id": "x", "side": "buy"}', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["would_send"] is None
    assert output["rejections"][0]["code"] == "INVALID_SIGNAL"
    assert "symbol" in output["rejections"][0]["message"]
