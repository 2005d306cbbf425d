"""Two engines on one database and broker with OM_PARTITIONS: each symbol is decided by one
engine at a time, in publish order, and the singletons run once."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlmodel import col, select

from om_core.db.models import SignalRecord
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.service import SINGLETONS
from om_plugins import DecisionContext, Signal, hookimpl
from tests.conftest import wait_for
from tests.flow.stack import running

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"]
PRICES = {"BTCUSDT": "60000", "ETHUSDT": "3000", "SOLUSDT": "150"}
ENV = {
    "OM_PARTITIONS": "4",
    "OM_CLUSTER_CHECK_INTERVAL": "0.2",
    "OM_CLUSTER_SESSION_TIMEOUT": "3",
    "OM_SYNC_INTERVAL": "0",
    "OM_POSITION_SNAPSHOT_INTERVAL": "0",
}


class Seen:
    """Which signals, of which symbols, this engine decided."""

    def __init__(self) -> None:
        self.symbols: dict[str, list[str]] = defaultdict(list)

    @hookimpl
    def om_check_signal(self, signal: Signal, context: DecisionContext) -> None:
        self.symbols[signal.symbol].append(signal.signal_id)


def _signal(n: int) -> dict[str, Any]:
    symbol = SYMBOLS[n % len(SYMBOLS)]
    return {"signal_id": f"p-{n}", "symbol": symbol, "side": "buy", "notional": "100"}


async def test_each_symbol_goes_to_one_engine_in_publish_order(
    server_urls: tuple[str, str],
) -> None:
    extra = [s for s in SYMBOLS if s not in PRICES]
    paper = {
        "prices": dict.fromkeys(extra, "1"),
        "instruments": {
            s: {"tick_size": "0.0001", "qty_step": "1", "min_qty": "1", "max_qty": "1000000"}
            for s in extra
        },
    }
    risk = {"max_order_notional": "1000", "max_position_notional": "100000"}
    plugin_config = {"paper": paper, "risk": risk}
    async with (
        running(*server_urls, env=ENV, plugin_config=plugin_config) as one,
        running(*server_urls, env=ENV, plugin_config=plugin_config) as two,
    ):
        a, b = one.service.coordinator, two.service.coordinator

        def balanced() -> bool:
            return all(
                len(c.running(SIGNALS_QUEUE)) == 2 and len(c.running("roles")) >= 1 for c in (a, b)
            )

        await wait_for(balanced, timeout=15, message="two partitions and a role each")
        assert a.runs(SINGLETONS) != b.runs(SINGLETONS)

        seen_one, seen_two = Seen(), Seen()
        one.service.hooks.pm.register(seen_one, name="probe")
        two.service.hooks.pm.register(seen_two, name="probe")
        ids = [f"p-{n}" for n in range(60)]
        for n in range(60):
            await one.publish(_signal(n))
        for sid in ids:
            row = await one.outcome(sid, timeout=30)
            assert row.status == "placed", (sid, row.reasons)

        # One engine per symbol, and both engines got some.
        for symbol in SYMBOLS:
            deciders = [s for s in (seen_one, seen_two) if s.symbols.get(symbol)]
            assert len(deciders) == 1, symbol
        assert seen_one.symbols and seen_two.symbols

        # Per symbol, decided (signal rows inserted) in the order published.
        async with one.service.sessions() as session:
            rows = (await session.exec(select(SignalRecord).order_by(col(SignalRecord.id)))).all()
        decided: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            decided[row.symbol or ""].append(row.signal_id)
        for symbol in SYMBOLS:
            assert decided[symbol] == [
                s for n, s in enumerate(ids) if _signal(n)["symbol"] == symbol
            ]

        # Every event was published once, by the one relay (it runs only on the leader).
        events = await one.all_events()
        created = [e for e in events if e["event_type"] == "order.created"]
        assert len({e["event_id"] for e in created}) == 60
