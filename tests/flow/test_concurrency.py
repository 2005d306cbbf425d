"""Two engines, one PostgreSQL database, one RabbitMQ queue: limits hold across instances."""

from __future__ import annotations

from typing import Any

from om_core.messaging.topology import SIGNALS_QUEUE
from om_plugins import DecisionContext, Signal, hookimpl
from tests.flow.stack import running


class Seen:
    """Records which signals this engine decided on."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    @hookimpl
    def om_check_signal(self, signal: Signal, context: DecisionContext) -> None:
        self.ids.append(signal.signal_id)


async def test_two_engines_cannot_both_pass_a_position_limit_only_one_fits(
    server_urls: tuple[str, str],
) -> None:
    # Each signal is a resting 0.010 BTC limit buy at 50,000 = 500 USDT; the limit is 800,
    # so exactly one fits (open orders count as filled).
    risk = {"max_position_notional": "800", "max_order_notional": "1000"}
    signals: list[dict[str, Any]] = [
        {
            "signal_id": f"race-{n}",
            "symbol": "BTCUSDT",
            "side": "buy",
            "qty": "0.010",
            "price": "50000",
        }
        for n in range(12)
    ]
    async with (
        running(*server_urls, plugin_config={"risk": risk}) as one,
        running(*server_urls, plugin_config={"risk": risk}) as two,
    ):
        seen_one, seen_two = Seen(), Seen()
        one.service.hooks.pm.register(seen_one, name="probe")
        two.service.hooks.pm.register(seen_two, name="probe")
        # Publish all at once so both engines hold several in flight concurrently.
        for s in signals:
            await one.publish(s)
        rows = [await one.outcome(s["signal_id"], timeout=30) for s in signals]
        placed = [r.signal_id for r in rows if r.status == "placed"]
        rejected = [r for r in rows if r.status == "rejected"]
        assert len(placed) == 1, [(r.signal_id, r.status, r.reasons) for r in rows]
        assert all(r.reasons[0]["code"] == "MAX_POSITION_NOTIONAL" for r in rejected)
        # Both engines really decided some of them (otherwise this would prove nothing).
        assert seen_one.ids and seen_two.ids, (seen_one.ids, seen_two.ids)
        assert len(one.paper.create_calls) + len(two.paper.create_calls) == 1
        assert await one.service.bus.message_count(SIGNALS_QUEUE) == 0
