"""Compare what we believe with what the exchange says, and correct the belief.

Runs at startup (before signals are consumed), every ``OM_SYNC_INTERVAL``, after the
exchange's order stream was interrupted, and on ``POST /api/v1/sync``:

1. every order we think is open or in doubt is looked up by client id (adapters fall back to
   order history and execution lists when the realtime view no longer has it); what the
   exchange says is applied through the very code path of the reverse flow, so corrections
   publish the same events a stream report would;
2. open orders on the exchange that we do not know are imported as external orders;
3. positions are compared and, where they drifted, set to the exchange's figures (with a
   ``sync`` snapshot).

``dry_run`` does all of it inside transactions that are rolled back, and reports the drift.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlmodel import col, select

from om_core.db.locks import RollBack, locked_transaction
from om_core.db.models import Order, Position
from om_core.db.session import SessionFactory
from om_core.db.types import utcnow
from om_core.engine.executor import OrderExecutor
from om_core.engine.processor import symbol_lock_key
from om_core.events.payloads import decimal_str
from om_core.orders.status import IN_DOUBT, OPEN
from om_core.periodic import Every
from om_core.positions.store import get_or_create_position, snapshot
from om_core.updates.apply import UpdateApplier
from om_core.updates.parse import OrderReport
from om_plugins.exchange import ExchangeAdapter, ExchangeOrder, ExchangePosition
from om_plugins.types import Category

__all__ = ["Drift", "ReconcileReport", "Reconciler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str  # order | external_order | position
    key: str
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass(slots=True)
class ReconcileReport:
    dry_run: bool
    started_at: datetime
    orders_checked: int = 0
    orders_updated: int = 0
    orders_imported: int = 0
    positions_checked: int = 0
    positions_corrected: int = 0
    drifts: list[Drift] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        return data


class Reconciler:
    def __init__(
        self,
        factory: SessionFactory,
        exchange: ExchangeAdapter,
        applier: UpdateApplier,
        executor: OrderExecutor,
        *,
        categories: tuple[Category, ...] = (Category.LINEAR,),
    ) -> None:
        self._factory = factory
        self._exchange = exchange
        self._applier = applier
        self._executor = executor
        self._categories = categories
        self._lock = asyncio.Lock()
        self._loop: Every | None = None

    async def run(self, *, dry_run: bool = False) -> ReconcileReport:
        async with self._lock:  # one reconciliation at a time per process
            report = ReconcileReport(dry_run=dry_run, started_at=utcnow())
            await self._orders(report)
            await self._unknown_open_orders(report)
            await self._positions(report)
            if report.drifts:
                log.warning(
                    "reconciliation%s found %d drift(s)",
                    " (dry run)" if dry_run else "",
                    len(report.drifts),
                )
            return report

    # -- orders ------------------------------------------------------------------------------

    async def _orders(self, report: ReconcileReport) -> None:
        async with self._factory() as session:
            orders = (
                await session.exec(
                    select(Order)
                    .where(col(Order.status).in_([s.value for s in OPEN]))
                    .order_by(col(Order.id))
                )
            ).all()
        for order in orders:
            report.orders_checked += 1
            if order.status in IN_DOUBT:
                if not report.dry_run and order.id is not None:
                    await self._executor.resolve(order.id)
                continue
            try:
                found = await self._exchange.get_order(
                    Category(order.category), order.symbol, order.client_order_id
                )
            except Exception as exc:
                report.errors.append(f"{order.client_order_id}: lookup failed: {exc}")
                continue
            if found is None:
                report.errors.append(
                    f"{order.client_order_id}: {order.status} here, unknown to the exchange"
                )
                continue
            result = await self._applier.apply(_as_report(found), dry_run=report.dry_run)
            if result.action == "applied":
                report.orders_updated += 1
                report.drifts.append(
                    Drift(
                        "order",
                        order.client_order_id,
                        {"status": order.status, "filled_qty": decimal_str(order.filled_qty)},
                        {"status": result.status, "filled_qty": decimal_str(found.filled_qty)},
                    )
                )

    async def _unknown_open_orders(self, report: ReconcileReport) -> None:
        for category in self._categories:
            try:
                open_orders = await self._exchange.list_open_orders(category)
            except Exception as exc:
                report.errors.append(f"listing open {category.value} orders failed: {exc}")
                continue
            for found in open_orders:
                async with self._factory() as session:
                    known = (
                        await session.exec(
                            select(Order.id).where(
                                (col(Order.client_order_id) == found.client_order_id)
                                | (col(Order.exchange_order_id) == found.exchange_order_id)
                            )
                        )
                    ).first()
                if known is not None:
                    continue
                result = await self._applier.apply(_as_report(found), dry_run=report.dry_run)
                report.orders_imported += 1
                report.drifts.append(
                    Drift(
                        "external_order",
                        found.exchange_order_id,
                        {},
                        {"status": result.status or found.status, "symbol": found.symbol},
                    )
                )

    # -- positions ---------------------------------------------------------------------------

    async def _positions(self, report: ReconcileReport) -> None:
        for category in self._categories:
            try:
                theirs = await self._exchange.list_positions(category)
            except NotImplementedError:
                return
            except Exception as exc:
                report.errors.append(f"listing {category.value} positions failed: {exc}")
                continue
            by_key = {(p.symbol, p.position_idx): p for p in theirs}
            async with self._factory() as session:
                ours = (
                    await session.exec(
                        select(Position).where(col(Position.category) == category.value)
                    )
                ).all()
            keys = set(by_key) | {(p.symbol, p.position_idx) for p in ours if p.size}
            for symbol, idx in sorted(keys):
                report.positions_checked += 1
                await self._position(report, category, symbol, idx, by_key.get((symbol, idx)))

    async def _position(
        self,
        report: ReconcileReport,
        category: Category,
        symbol: str,
        idx: int,
        theirs: ExchangePosition | None,
    ) -> None:
        size = theirs.size if theirs is not None else Decimal(0)
        entry = theirs.avg_entry_price if theirs is not None else Decimal(0)
        key = f"{category.value}:{symbol}:{idx}"
        try:
            async with locked_transaction(self._factory, symbol_lock_key(category, symbol)) as s:
                row = await get_or_create_position(s, category.value, symbol, idx)
                if row.size == size:
                    raise RollBack
                before = _position_view(row.size, row.avg_entry_price)
                row.size = size
                row.avg_entry_price = entry if size else Decimal(0)
                if theirs is not None and theirs.mark_price is not None:
                    row.mark_price = theirs.mark_price
                row.updated_at = utcnow()
                await s.flush()
                snapshot(s, row, reason="sync")
                after = _position_view(row.size, row.avg_entry_price)
                report.positions_corrected += 1
                report.drifts.append(Drift("position", key, before, after))
                log.warning("position %s corrected from %s to %s", key, before, after)
                if report.dry_run:
                    raise RollBack
        except RollBack:
            pass

    # -- schedule ----------------------------------------------------------------------------

    def start(self, interval: float) -> None:
        self._loop = Every(interval, self.run, name="reconciliation")
        self._loop.start()

    async def stop(self) -> None:
        if self._loop is not None:
            await self._loop.stop()


def _position_view(size: Decimal, entry: Decimal) -> dict[str, Any]:
    return {"size": decimal_str(size), "avg_entry_price": decimal_str(entry)}


def _as_report(found: ExchangeOrder) -> OrderReport:
    """An exchange's order, as if its stream had reported it now."""
    return OrderReport(
        order_id=found.exchange_order_id,
        order_link_id=found.client_order_id,
        symbol=found.symbol,
        category=found.category.value,
        side=found.side.value,
        order_type=found.order_type.value,
        status=found.status,
        price=found.price,
        qty=found.qty,
        avg_price=found.avg_price,
        cum_exec_qty=found.filled_qty,
        cum_exec_value=found.cum_exec_value,
        cum_exec_fee=found.cum_exec_fee,
        leaves_qty=None,
        reject_reason=found.reject_reason,
        cancel_type="",
        created_ms=int(found.created_at.timestamp() * 1000),
        updated_ms=int(found.updated_at.timestamp() * 1000),
        position_idx=0,
        reduce_only=False,
        time_in_force="",
        raw=dict(found.raw) or {"source": "reconciliation", "orderId": found.exchange_order_id},
    )
