"""Instrument rules from the exchange, cached: both flows need them (decisions size orders
with them; order reports need an instrument's coins to settle fees)."""

from __future__ import annotations

import logging
import time

from om_plugins.errors import ExchangeRejected, ExchangeUnavailable
from om_plugins.exchange import ExchangeAdapter
from om_plugins.types import Category, Instrument

__all__ = ["Instruments"]

log = logging.getLogger(__name__)


class Instruments:
    def __init__(self, exchange: ExchangeAdapter, *, ttl: float = 300.0) -> None:
        self._exchange = exchange
        self._ttl = ttl
        self._cache: dict[tuple[Category, str], tuple[float, Instrument]] = {}

    async def get(self, category: Category, symbol: str) -> Instrument:
        """The rules of ``symbol``; raises what the exchange raised."""
        key = (category, symbol)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        instrument = await self._exchange.get_instrument(category, symbol)
        self._cache[key] = (time.monotonic(), instrument)
        return instrument

    async def find(self, category: Category, symbol: str) -> Instrument | None:
        """The rules of ``symbol`` — the last known ones while the exchange is unreachable —
        or ``None`` when the exchange lists no such instrument (any more).

        Raises :class:`ExchangeUnavailable` only for an instrument never seen before.
        """
        try:
            return await self.get(category, symbol)
        except ExchangeRejected as exc:
            log.warning("no instrument rules for %s %s: %s", category.value, symbol, exc)
            return None
        except ExchangeUnavailable:
            cached = self._cache.get((category, symbol))
            if cached is None:
                raise
            return cached[1]

    def forget(self, category: Category, symbol: str) -> None:
        """Drop a cached rule set, e.g. after the exchange refused an order's precision."""
        self._cache.pop((category, symbol), None)
