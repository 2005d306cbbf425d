"""The Order Manager trading on the fake Bybit: OM_EXCHANGE=bybit end to end, and the plugin
staying out of the way when another exchange is selected."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from om_core import trading_state
from om_core.config import load_settings
from om_core.orders.client_id import client_order_id
from om_core.plugins import PluginHooks, load_plugins
from om_plugins import TradingState
from tests.bybit.conftest import API_KEY, API_SECRET
from tests.fake_bybit import FakeBybit
from tests.flow.stack import running


def bybit_env(fake: FakeBybit, **extra: str) -> dict[str, str]:
    return {
        "OM_EXCHANGE": "bybit",
        "OM_BYBIT_API_KEY": API_KEY,
        "OM_BYBIT_API_SECRET": API_SECRET,
        "OM_BYBIT_BASE_URL": fake.http_url,
        "OM_BYBIT_LINEAR_SETTLE_COINS": "USDT",
        **extra,
    }


def test_builtins_load_without_bybit_credentials() -> None:
    settings = load_settings(env={})
    assert "bybit" in settings.plugins and settings.exchange == "paper"
    loaded = load_plugins(settings.plugins, {}, {})
    factories = PluginHooks(loaded.pm).exchange_factories()
    assert {"paper", "bybit"} <= set(factories)


async def test_a_signal_becomes_an_order_on_bybit(fake: FakeBybit, tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    async with running(db, "memory://", env=bybit_env(fake)) as stack:
        await stack.publish(
            {"signal_id": "b-1", "symbol": "BTCUSDT", "side": "buy", "qty": "0.010"}
        )
        row = await stack.outcome("b-1")
        assert row.status == "placed", row.reasons
        [order] = await stack.orders("b-1")
    link = client_order_id("b-1", 0)
    assert order.client_order_id == link
    assert order.exchange_order_id == fake.orders[link].order_id
    [body] = fake.create_calls
    assert body["orderLinkId"] == link and body["qty"] == "0.010"


async def test_a_timeout_after_bybit_executed_is_resolved_by_lookup_not_resent(
    fake: FakeBybit, tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    env = bybit_env(fake, OM_BYBIT_REQUEST_TIMEOUT_S="0.5")
    async with running(db, "memory://", env=env) as stack:
        fake.timeout_next_create(execute=True, delay=5.0)
        await stack.publish(
            {
                "signal_id": "b-2",
                "symbol": "BTCUSDT",
                "side": "buy",
                "qty": "0.002",
                "price": "50000",
            }
        )
        row = await stack.outcome("b-2")
        assert row.status == "placed", row.reasons
        [order] = await stack.orders("b-2")
        assert order.exchange_order_id == fake.orders[order.client_order_id].order_id
        assert order.price == Decimal("50000")
    assert len(fake.create_calls) == 1


async def test_a_definitive_rejection_is_recorded_with_bybits_code(
    fake: FakeBybit, tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    async with running(db, "memory://", env=bybit_env(fake)) as stack:
        fake.reject_next_create(110007, "ab not enough for new order")
        await stack.publish(
            {"signal_id": "b-3", "symbol": "BTCUSDT", "side": "buy", "qty": "0.010"}
        )
        row = await stack.outcome("b-3")
        assert row.status == "rejected"
        [order] = await stack.orders("b-3")
        # The neutral code, with Bybit's own beside it (issue 13).
        assert (order.status, order.reject_code, order.exchange_code) == (
            "rejected",
            "INSUFFICIENT_BALANCE",
            "110007",
        )
    assert len(fake.create_calls) == 1


async def test_bad_credentials_halt_trading_with_a_clear_reason(
    fake: FakeBybit, tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    # Market data is public; the first signed request (the create) is refused: 10004.
    env = bybit_env(fake, OM_BYBIT_API_SECRET="not-the-secret")
    async with running(db, "memory://", env=env) as stack:
        await stack.publish(
            {
                "signal_id": "auth-1",
                "symbol": "BTCUSDT",
                "side": "buy",
                "qty": "0.010",
                "price": "50000",
            }
        )
        row = await stack.outcome("auth-1")
        assert row.status == "rejected"
        state = [e for e in await stack.all_events() if e["event_type"] == "trading_state.changed"]
        assert state and state[0]["trading_state"]["state"] == "halted"
        assert "authentication" in state[0]["trading_state"]["reason"]
        assert "not-the-secret" not in state[0]["trading_state"]["reason"]
        await stack.publish(
            {
                "signal_id": "auth-2",
                "symbol": "BTCUSDT",
                "side": "buy",
                "qty": "0.010",
                "price": "50000",
            }
        )
        row = await stack.outcome("auth-2")
        assert row.status == "rejected"
        assert {r["code"] for r in row.reasons} & {"TRADING_HALTED", "EXCHANGE_AUTH"}
        async with stack.service.sessions() as session:
            assert (await trading_state.get_state(session)).state == TradingState.HALTED
    assert fake.orders == {}


async def test_rate_limiting_slows_an_order_down_instead_of_failing_it(
    fake: FakeBybit, resent: set[str], tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'om.db'}"
    link = client_order_id("throttled", 0)
    resent.add(link)  # the throttled create is recorded by the fake, then sent again
    async with running(db, "memory://", env=bybit_env(fake)) as stack:
        fake.throttle("/v5/order/create", count=1)
        await stack.publish(
            {
                "signal_id": "throttled",
                "symbol": "BTCUSDT",
                "side": "buy",
                "qty": "0.010",
                "price": "50000",
            }
        )
        row = await stack.outcome("throttled")
        assert row.status == "placed", row.reasons
    assert [c["orderLinkId"] for c in fake.create_calls] == [link, link]
    assert list(fake.orders) == [link]
