"""The engine's own checks (om_core.engine.guard): trading state and signal age, as pure
functions over the position and order books."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest

from om_core.engine import guard
from om_core.signals.contract import signal_born, stale_rejection
from om_plugins import (
    Category,
    OpenOrder,
    Position,
    PositionMode,
    ProposedOrder,
    Rejection,
    Side,
)
from om_plugins.types import TradingState
from tests.plugins_builtin.builders import NOW, proposed


def position(size: str, idx: int = 0) -> Position:
    return Position(
        category=Category.LINEAR, symbol="BTCUSDT", size=Decimal(size), position_idx=idx
    )


def working(side: Side, qty: str, filled: str = "0") -> OpenOrder:
    return OpenOrder(
        client_order_id=f"w-{side.value}-{qty}",
        symbol="BTCUSDT",
        category=Category.LINEAR,
        side=side,
        qty=Decimal(qty),
        filled_qty=Decimal(filled),
        price=Decimal("50000"),
        status="new",
    )


def check(
    order: ProposedOrder,
    size: str,
    *,
    state: TradingState = TradingState.REDUCING,
    open_orders: tuple[OpenOrder, ...] = (),
) -> ProposedOrder | list[Rejection]:
    held = position(size)
    return guard.check_order(
        order,
        state=state,
        mode=PositionMode.ONE_WAY,
        position=held,
        positions=(held,) if held.size else (),
        open_orders=open_orders,
    )


def test_halted_refuses_every_signal_and_active_refuses_none() -> None:
    [halted] = guard.check_state(TradingState.HALTED)
    assert (halted.code, halted.plugin) == ("TRADING_HALTED", "engine")
    assert halted.details == {"trading_state": "halted"}
    assert guard.check_state(TradingState.REDUCING) == []
    assert guard.check_state(TradingState.ACTIVE) == []
    assert check(proposed(), "0", state=TradingState.ACTIVE) == proposed()
    [again] = check(proposed(), "1", state=TradingState.HALTED)  # type: ignore[misc]
    assert again.code == "TRADING_HALTED"


@pytest.mark.parametrize(
    ("size", "side", "qty"),
    [("0.05", Side.SELL, "0.05"), ("0.05", Side.SELL, "0.001"), ("-0.05", Side.BUY, "0.02")],
)
def test_reducing_passes_an_order_that_shrinks_the_position_and_sends_it_reduce_only(
    size: str, side: Side, qty: str
) -> None:
    order = proposed(side=side, qty=qty)
    assert not order.reduce_only
    passed = check(order, size)
    assert passed == dataclasses.replace(order, reduce_only=True)


@pytest.mark.parametrize(
    ("size", "side", "qty"),
    [
        ("0.05", Side.SELL, "0.051"),  # reverses through zero
        ("0.05", Side.BUY, "0.001"),  # grows
        ("0", Side.SELL, "0.001"),  # opens
        ("-0.05", Side.SELL, "0.001"),  # grows a short
    ],
)
def test_reducing_refuses_an_order_that_does_not_shrink_the_position(
    size: str, side: Side, qty: str
) -> None:
    result = check(proposed(side=side, qty=qty), size)
    assert isinstance(result, list)
    [refused] = result
    assert (refused.code, refused.plugin) == ("REDUCING_ONLY", "engine")
    assert refused.details == {
        "trading_state": "reducing",
        "position_size": size,
        "working_qty": "0",
        "side": side.value,
        "qty": qty,
    }


def test_open_orders_on_the_same_side_count_against_the_position() -> None:
    # Long 0.05 with 0.03 already being sold: only 0.02 more may be sold.
    sells = (working(Side.SELL, "0.04", filled="0.01"), working(Side.BUY, "1"))
    assert not isinstance(
        check(proposed(side=Side.SELL, qty="0.02"), "0.05", open_orders=sells), list
    )
    refused = check(proposed(side=Side.SELL, qty="0.021"), "0.05", open_orders=sells)
    assert isinstance(refused, list) and refused[0].details["working_qty"] == "0.03"


def test_hedge_mode_reduces_only_the_side_the_order_trades_and_only_reduce_only() -> None:
    long_side, short_side = position("0.05", idx=1), position("-0.02", idx=2)
    net = position("0.03")

    def in_hedge(order: ProposedOrder) -> ProposedOrder | list[Rejection]:
        return guard.check_order(
            order,
            state=TradingState.REDUCING,
            mode=PositionMode.HEDGE,
            position=net,
            positions=(long_side, short_side),
            open_orders=(),
        )

    close_long = dataclasses.replace(
        proposed(side=Side.SELL, qty="0.05"), reduce_only=True, position_idx=1
    )
    assert in_hedge(close_long) == close_long
    # More than the long side holds: refused.
    assert isinstance(in_hedge(dataclasses.replace(close_long, qty=Decimal("0.051"))), list)
    # Not reduce-only: in hedge mode it opens a short, whatever the net position.
    open_short = dataclasses.replace(proposed(side=Side.SELL, qty="0.01"), position_idx=2)
    assert isinstance(in_hedge(open_short), list)
    close_short = dataclasses.replace(
        proposed(side=Side.BUY, qty="0.02"), reduce_only=True, position_idx=2
    )
    assert in_hedge(close_short) == close_short


def test_a_spot_order_is_checked_but_not_flagged_reduce_only() -> None:
    order = dataclasses.replace(proposed(side=Side.SELL, qty="0.01"), category=Category.SPOT)
    held = Position(category=Category.SPOT, symbol="BTCUSDT", size=Decimal("0.05"))
    assert (
        guard.check_order(
            order,
            state=TradingState.REDUCING,
            mode=PositionMode.ONE_WAY,
            position=held,
            positions=(held,),
            open_orders=(),
        )
        == order
    )


def test_one_age_check_counted_from_created_at_else_receipt() -> None:
    limit = timedelta(seconds=60)
    assert stale_rejection(NOW - limit, NOW, max_age=limit) is None  # exactly at the limit
    stale = stale_rejection(NOW - limit - timedelta(milliseconds=1), NOW, max_age=limit)
    assert stale is not None
    assert (stale.code, stale.plugin) == ("SIGNAL_STALE", "engine")
    assert stale.details == {"age_seconds": "60.001", "max_age_seconds": "60.000"}
    received = NOW - timedelta(seconds=5)
    assert signal_born(None, sent_at=None, received_at=received) == received
    hour_ago = NOW - timedelta(hours=1)
    assert signal_born(hour_ago, sent_at=None, received_at=received) == hour_ago
