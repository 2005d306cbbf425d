"""Compare what we believe with what the exchange says, and correct the belief.

Runs at startup (before signals are consumed), every ``OM_SYNC_INTERVAL``, after the
exchange's order stream was interrupted, and on ``POST /api/v1/sync``, for every category the
exchange adapter trades (``ExchangeAdapter.categories``):

1. every order we think is open or in doubt is looked up by client id (adapters fall back to
   order history and execution lists when the realtime view no longer has it); what the
   exchange says is applied through the very code path of the reverse flow, so corrections
   publish the same events a stream report would;
2. orders whose fills were inferred from order reports get their real executions fetched
   (``list_executions``) and applied: they replace the inferred fills;
3. open orders on the exchange that we do not know are imported as external orders;
4. positions are compared (``list_positions``) and, where the size drifted, set to the
   exchange's figures, with a ``sync`` snapshot and a ``position.corrected`` event — unless
   the book holds a fill executed after the exchange's figures (a listing taken before a
   fill the stream has delivered since): setting those would undo the fill for good, so the
   position waits for the next run.

``dry_run`` does all of it inside transactions that are rolled back, and reports the drift.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from om_core.db.locks import RollBack, locked_transaction, symbol_lock_key
from om_core.db.models import Fill, Order, Position, PositionContribution
from om_core.db.session import SessionFactory
from om_core.db.types import utcnow
from om_core.engine.executor import OrderExecutor
from om_core.events.outbox import add_event
from om_core.events.payloads import EventType, decimal_str, new_event, position_payload
from om_core.orders.status import IN_DOUBT, OPEN
from om_core.periodic import Every
from om_core.positions.store import get_or_create_position, set_from_exchange, snapshot
from om_core.updates.apply import UpdateApplier
from om_core.updates.validate import check_reports
from om_plugins.exchange import ExchangeAdapter
from om_plugins.reports import PositionReport
from om_plugins.types import Category

__all__ = ["Drift", "ReconcileReport", "Reconciler"]

log = logging.getLogger(__name__)

#: How far the exchange's clock (fill times) and ours (when a listing was asked for) may
#: disagree, for listings without a time of their own.
CLOCK_MARGIN = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str  # order | external_order | fills | position
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
    fills_fetched: int = 0
    positions_checked: int = 0
    positions_corrected: int = 0
    #: Positions left alone because a fill reached the book after the exchange's listing.
    positions_deferred: int = 0
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
        categories: tuple[Category, ...] | None = None,
        fetch_fills_per_run: int = 50,
    ) -> None:
        self._factory = factory
        self._exchange = exchange
        self._applier = applier
        self._executor = executor
        self._categories = categories if categories is not None else exchange.categories
        self._fetch_limit = fetch_fills_per_run
        self._lock = asyncio.Lock()
        self._loop: Every | None = None

    async def run(self, *, dry_run: bool = False) -> ReconcileReport:
        async with self._lock:  # one reconciliation at a time per process
            report = ReconcileReport(dry_run=dry_run, started_at=utcnow())
            await self._orders(report)
            await self._missing_fills(report)
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
                    Category(order.category),
                    order.symbol,
                    _known_client_id(order),
                    exchange_order_id=order.exchange_order_id or "",
                )
            except Exception as exc:
                report.errors.append(f"{order.client_order_id}: lookup failed: {exc}")
                continue
            if found is None:
                report.errors.append(
                    f"{order.client_order_id}: {order.status} here, unknown to the exchange"
                )
                continue
            try:
                check_reports([found])
            except ValueError as exc:
                report.errors.append(f"{order.client_order_id}: unusable answer: {exc}")
                continue
            result = await self._applier.apply(found, dry_run=report.dry_run)
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

    async def _missing_fills(self, report: ReconcileReport) -> None:
        """Orders whose fills were inferred from order reports: fetch the real ones."""
        async with self._factory() as session:
            orders = (
                await session.exec(
                    select(Order)
                    .where(
                        col(Order.id).in_(select(Fill.order_id).where(col(Fill.inferred).is_(True)))
                    )
                    .order_by(col(Order.id))
                    .limit(self._fetch_limit)
                )
            ).all()
        for order in orders:
            try:
                executions = await self._exchange.list_executions(
                    Category(order.category),
                    order.symbol,
                    client_order_id="" if order.is_external else order.client_order_id,
                    exchange_order_id=order.exchange_order_id or "",
                )
                check_reports(executions)
            except NotImplementedError:
                return
            except Exception as exc:
                report.errors.append(f"{order.client_order_id}: executions: {exc}")
                continue
            applied = 0
            for execution in executions:
                result = await self._applier.apply(execution, dry_run=report.dry_run)
                applied += result.action == "applied"
            if applied:
                report.fills_fetched += applied
                report.drifts.append(
                    Drift(
                        "fills",
                        order.client_order_id,
                        {"inferred": True},
                        {"executions_applied": applied},
                    )
                )

    async def _unknown_open_orders(self, report: ReconcileReport) -> None:
        for category in self._categories:
            try:
                open_orders = await self._exchange.list_open_orders(category)
            except Exception as exc:
                report.errors.append(f"listing open {category.value} orders failed: {exc}")
                continue
            try:
                check_reports(open_orders)
            except ValueError as exc:
                report.errors.append(f"listing open {category.value} orders: {exc}")
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
                result = await self._applier.apply(found, dry_run=report.dry_run)
                report.orders_imported += 1
                report.drifts.append(
                    Drift(
                        "external_order",
                        found.exchange_order_id,
                        {},
                        {"status": result.status or found.status.value, "symbol": found.symbol},
                    )
                )

    # -- positions ---------------------------------------------------------------------------

    async def _positions(self, report: ReconcileReport) -> None:
        for category in self._categories:
            asked_at = utcnow()
            try:
                theirs = await self._exchange.list_positions(category)
                check_reports(theirs)
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
                await self._position(
                    report, category, symbol, idx, by_key.get((symbol, idx)), asked_at
                )

    async def _position(
        self,
        report: ReconcileReport,
        category: Category,
        symbol: str,
        idx: int,
        theirs: PositionReport | None,
        asked_at: datetime,
    ) -> None:
        size = theirs.size if theirs is not None else Decimal(0)
        # The exchange's figures are as of their own time when it gives one, else as of the
        # listing; a fill of ours executed after that (less the clocks' margin, without the
        # exchange's time) is one the figures may not hold.
        stamped = theirs.updated_at if theirs is not None else None
        as_of = stamped or asked_at
        newer_than = stamped or asked_at - CLOCK_MARGIN
        key = f"{category.value}:{symbol}:{idx}"
        lock = symbol_lock_key(category.value, symbol)
        try:
            async with locked_transaction(self._factory, lock) as s:
                row = await get_or_create_position(s, category.value, symbol, idx)
                if row.size == size:
                    raise RollBack
                if await _moved_since(s, row, newer_than):
                    # Our figures hold a fill executed after the exchange's: the listing is
                    # older than the book, and setting it would undo that fill for good. The
                    # next run compares again.
                    report.positions_deferred += 1
                    raise RollBack
                before = _position_view(row.size, row.avg_entry_price)
                entry = theirs.avg_entry_price if theirs is not None else None
                row.size = size
                if not size:
                    row.avg_entry_price = Decimal(0)
                elif entry is not None and entry > 0:
                    row.avg_entry_price = entry
                if theirs is not None and theirs.mark_price is not None:
                    row.mark_price = theirs.mark_price
                row.updated_at = utcnow()
                # Fills the exchange's figures hold already must not be counted again when
                # they arrive late; later ones start from the corrected figures.
                set_from_exchange(row, as_of)
                await s.flush()
                snapshot(s, row, reason="sync")
                after = _position_view(row.size, row.avg_entry_price)
                add_event(
                    s,
                    new_event(
                        EventType.POSITION_CORRECTED,
                        signal_id=None,
                        position=position_payload(row),
                        correction={"before": before, "after": after, "source": "exchange"},
                    ),
                )
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


async def _moved_since(session: AsyncSession, row: Position, as_of: datetime) -> bool:
    """Whether a fill executed after ``as_of`` moved the position ``row``."""
    if row.id is None:
        return False
    found = (
        await session.exec(
            select(Fill.id)
            .join(PositionContribution, col(PositionContribution.id) == col(Fill.contribution_id))
            .where(
                col(PositionContribution.position_id) == row.id,
                col(Fill.sized),
                col(Fill.executed_at) > as_of,
            )
            .limit(1)
        )
    ).first()
    return found is not None


def _known_client_id(order: Order) -> str:
    """The client id the exchange knows the order by: ``""`` for an order placed elsewhere
    without one (the engine named it ``ext-<exchange id>``; look it up by that id)."""
    if order.is_external and order.exchange_order_id:
        if order.client_order_id == f"ext-{order.exchange_order_id}"[:36]:
            return ""
    return order.client_order_id


def _position_view(size: Decimal, entry: Decimal) -> dict[str, Any]:
    return {"size": decimal_str(size), "avg_entry_price": decimal_str(entry)}
