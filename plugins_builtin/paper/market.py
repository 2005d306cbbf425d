"""Simulated market prices: the random walk and the prices orders fill at."""

from __future__ import annotations

import random
from decimal import Decimal

from om_plugins import Side
from om_plugins.rounding import round_down, round_up

__all__ = ["PriceWalk", "round_to_tick", "taker_price"]

_BPS = Decimal(10_000)


def round_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """The nearest multiple of ``tick`` (halves round up), never below one tick."""
    return max(round_down(price + tick / 2, tick), tick)


def taker_price(mark: Decimal, side: Side, slippage_bps: Decimal, tick: Decimal) -> Decimal:
    """Where an order that takes liquidity fills: ``slippage_bps`` worse than ``mark``.

    The result is rounded to the tick *against* the trader (a buy up, a sell down), the
    pessimistic choice for a simulation.
    """
    moved = mark * (1 + side.sign * slippage_bps / _BPS)
    if side is Side.BUY:
        return round_up(moved, tick)
    return max(round_down(moved, tick), tick)


class PriceWalk:
    """A seeded random walk: each step moves a price uniformly within ± ``step_bps``.

    Randomness is drawn as whole hundredths of a basis point, so no float ever touches a
    price; the same seed replays the same prices.
    """

    def __init__(self, step_bps: Decimal, seed: int | None) -> None:
        self._span = int(step_bps * 100)  # in hundredths of a basis point
        self._rng = random.Random(seed)

    def next_price(self, price: Decimal, tick: Decimal) -> Decimal:
        hundredths = self._rng.randint(-self._span, self._span)
        moved = price * (1 + Decimal(hundredths) / Decimal(1_000_000))
        return round_to_tick(moved, tick)
