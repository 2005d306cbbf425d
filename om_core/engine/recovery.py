"""Settle orders left in doubt: at startup before consuming, then periodically."""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import col, select

from om_core.db.models import Order
from om_core.db.session import SessionFactory
from om_core.engine.executor import OrderExecutor
from om_core.orders.status import IN_DOUBT
from om_core.periodic import Every

__all__ = ["InDoubtResolver"]

log = logging.getLogger(__name__)


class InDoubtResolver:
    def __init__(
        self, factory: SessionFactory, executor: OrderExecutor, *, interval: float = 1.0
    ) -> None:
        self._factory = factory
        self._executor = executor
        self._loop = Every(interval, self.resolve_all, name="in-doubt resolution")

    async def in_doubt(self) -> list[int]:
        async with self._factory() as session:
            rows = await session.exec(
                select(Order.id)
                .where(col(Order.status).in_([s.value for s in IN_DOUBT]))
                .order_by(col(Order.id))
            )
            return [i for i in rows.all() if i is not None]

    async def resolve_all(self) -> int:
        """One pass over every order in doubt; returns how many are still in doubt."""
        remaining = 0
        for order_id in await self.in_doubt():
            try:
                if not await self._executor.resolve(order_id):
                    remaining += 1
            except Exception:
                log.exception("could not resolve order %s yet", order_id)
                remaining += 1
        return remaining

    async def resolve_until_settled(self, *, max_delay: float = 5.0) -> None:
        """Startup: block until nothing is in doubt (the exchange must answer first)."""
        delay = 0.2
        while (remaining := await self.resolve_all()) > 0:
            log.warning("%d order(s) still in doubt; checking again in %.1fs", remaining, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
