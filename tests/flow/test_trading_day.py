"""``context.today``: each position's realized PnL and fees since the trading day began,
derived from what the database records — the cumulative figures in ``positions`` less those of
the last ``position_snapshots`` row before the day's start — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from om_core.db.models import Position, PositionSnapshot
from om_core.engine.context import ContextBuilder, trading_day_bounds
from om_plugins import Category, PnL, TradingDay
from tests.flow.stack import running

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def _position(symbol: str, realized: str, fees: str, updated: datetime) -> Position:
    return Position(
        category="linear",
        symbol=symbol,
        size=Decimal("0"),
        avg_entry_price=Decimal("0"),
        realized_pnl=Decimal(realized),
        fees_paid=Decimal(fees),
        created_at=NOW - timedelta(days=5),
        updated_at=updated,
    )


def _snapshot(row: Position, realized: str, fees: str, at: datetime) -> PositionSnapshot:
    assert row.id is not None
    return PositionSnapshot(
        position_id=row.id,
        category=row.category,
        symbol=row.symbol,
        size=Decimal("0"),
        avg_entry_price=Decimal("0"),
        realized_pnl=Decimal(realized),
        fees_paid=Decimal(fees),
        reason="fill",
        created_at=at,
    )


def test_trading_day_bounds() -> None:
    assert trading_day_bounds(NOW, time(0)) == (
        datetime(2025, 3, 3, tzinfo=UTC),
        datetime(2025, 3, 4, tzinfo=UTC),
    )
    assert trading_day_bounds(NOW, time(22)) == (
        datetime(2025, 3, 2, 22, tzinfo=UTC),
        datetime(2025, 3, 3, 22, tzinfo=UTC),
    )
    assert trading_day_bounds(datetime(2025, 3, 3, 22, tzinfo=UTC), time(22))[0] == datetime(
        2025, 3, 3, 22, tzinfo=UTC
    )


async def test_todays_pnl_is_the_change_since_the_day_began(db_url: str) -> None:
    async with running(db_url, "memory://", consume=False) as stack:
        async with stack.service.sessions() as session, session.begin():
            btc = _position("BTCUSDT", "-50", "2", NOW - timedelta(hours=1))
            eth = _position("ETHUSDT", "100", "5", NOW - timedelta(days=2))  # not touched today
            sol = _position("SOLUSDT", "-7", "1", NOW - timedelta(minutes=5))  # new today
            session.add_all([btc, eth, sol])
            await session.flush()
            session.add_all(
                [
                    _snapshot(btc, "-40", "1", datetime(2025, 3, 2, 12, tzinfo=UTC)),
                    _snapshot(btc, "-45", "1.5", datetime(2025, 3, 2, 23, tzinfo=UTC)),
                    _snapshot(btc, "-50", "2", NOW - timedelta(hours=1)),
                    _snapshot(eth, "100", "5", NOW - timedelta(days=2)),
                ]
            )

        async def today(day_start: time) -> TradingDay:
            builder = ContextBuilder(stack.service.exchange, day_start=day_start)
            async with stack.service.sessions() as session:
                state = await builder.read(
                    await session.connection(), {(Category.LINEAR, "BTCUSDT")}, NOW
                )
            return state.today

        midnight = await today(time(0))
        assert midnight.start == datetime(2025, 3, 3, tzinfo=UTC)
        assert midnight.by_symbol == {
            "BTCUSDT": PnL(Decimal("-5"), Decimal("0.5")),  # since the 23:00 snapshot
            "SOLUSDT": PnL(Decimal("-7"), Decimal("1")),  # no snapshot before: all of it
        }
        assert midnight.total == PnL(Decimal("-12"), Decimal("1.5"))
        # A day that starts at 22:00: the 23:00 snapshot is inside it.
        evening = await today(time(22))
        assert evening.symbol("BTCUSDT") == PnL(Decimal("-10"), Decimal("1"))
