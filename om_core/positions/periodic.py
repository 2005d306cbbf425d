"""Snapshot open positions periodically with a fresh mark price and unrealized PnL."""

from __future__ import annotations

import logging

from sqlmodel import select

from om_core.db.locks import locked_transaction, symbol_lock_key
from om_core.db.models import Position
from om_core.db.session import SessionFactory
from om_core.periodic import Every
from om_core.positions.store import snapshot
from om_plugins.exchange import ExchangeAdapter
from om_plugins.types import Category

__all__ = ["PeriodicSnapshots"]

log = logging.getLogger(__name__)


class PeriodicSnapshots:
    def __init__(
        self, factory: SessionFactory, exchange: ExchangeAdapter, *, interval: float
    ) -> None:
        self._factory = factory
        self._exchange = exchange
        self._loop = Every(interval, self.take, name="position snapshots")

    async def take(self) -> int:
        """Snapshot every open position now; returns how many were written."""
        async with self._factory() as session:
            open_positions = [p for p in (await session.exec(select(Position))).all() if p.size]
        written = 0
        for pos in open_positions:
            try:
                mark = await self._exchange.get_reference_price(Category(pos.category), pos.symbol)
            except Exception as exc:
                log.warning("no mark price for %s: %s", pos.symbol, exc)
                mark = None
            key = symbol_lock_key(pos.category, pos.symbol)
            async with locked_transaction(self._factory, key) as session:
                row = await session.get(Position, pos.id)
                if row is None or not row.size:
                    continue
                if mark is not None:
                    row.mark_price = mark
                snapshot(session, row, reason="periodic")
                written += 1
        return written

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
