"""Apply exchange reports: order state, fills, positions, snapshots and events, atomically.

Each report is one transaction under the symbol's lock (the same lock decisions take), so a
position is never updated by two reports at once, on any number of service instances, and
every decision sees every committed fill. The events describing a change are written to the
outbox in the same transaction.

Under load, reports that arrived together are applied in one transaction
(:meth:`UpdateApplier.apply_many`), in arrival order, under the locks of all their symbols:
the rows of the batch are read once and written in one flush, with the same results as
applying them one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select

from om_core import faults
from om_core.db.locks import RollBack, locked_transaction
from om_core.db.models import (
    Fill,
    Order,
    Position,
    PositionSnapshot,
    QuarantinedUpdate,
    table,
)
from om_core.db.session import AsyncSession, SessionFactory
from om_core.db.types import utcnow
from om_core.engine.processor import symbol_lock_key
from om_core.events.outbox import add_event, insert_events
from om_core.events.payloads import (
    EventType,
    decimal_str,
    new_event,
    order_payload,
    position_payload,
)
from om_core.orders.lifecycle import mark_accepted, settle_signal
from om_core.orders.status import OrderStatus
from om_core.orders.transitions import Action, decide, map_status
from om_core.positions.store import PositionKey, apply_fill_to_position
from om_core.signals.store import json_safe
from om_core.updates.parse import ExecutionReport, OrderReport, ms_to_datetime

__all__ = ["Applied", "UpdateApplier"]

log = logging.getLogger(__name__)

_FILLS = table(Fill)
_SNAPSHOTS = table(PositionSnapshot)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one report did (for logs, metrics and tests)."""

    action: str  # applied | ignored | quarantined
    order_id: int | None = None
    status: str | None = None
    fill_qty: Decimal | None = None
    external: bool = False
    reason: str = ""


class _DryRun(RollBack):
    def __init__(self, result: Applied) -> None:
        super().__init__()
        self.result = result


@dataclass(slots=True)
class _Batch:
    """One transaction's rows: those it read already (locked), so a batch reads each one
    once, and those it will insert at the end."""

    by_link_id: dict[str, Order] = field(default_factory=dict)
    by_exchange_id: dict[str, Order] = field(default_factory=dict)
    positions: dict[PositionKey, Position] = field(default_factory=dict)
    #: Fills added and not flushed yet: a query cannot see them.
    exec_ids: set[str] = field(default_factory=set)
    #: External orders recorded by this batch, until their first report is applied.
    fresh_external: set[str] = field(default_factory=set)
    #: Rows to insert at the end, with one Core statement per table (the ORM would build
    #: an object for each): fills, position snapshots, outbox events.
    fills: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    async def write(self, session: AsyncSession) -> None:
        """Insert what was staged. The ORM's changes go first, so an order's events written
        through the session (``order.created``) keep their place before the staged ones."""
        await session.flush()
        conn = await session.connection()
        if self.fills:
            await conn.execute(insert(_FILLS), self.fills)
        if self.snapshots:
            await conn.execute(insert(_SNAPSHOTS), self.snapshots)
        await insert_events(conn, *self.events)
        self.fills, self.snapshots, self.events = [], [], []

    def remember(self, order: Order) -> None:
        self.by_link_id[order.client_order_id] = order
        if order.exchange_order_id:
            self.by_exchange_id[order.exchange_order_id] = order


@dataclass(frozen=True, slots=True)
class _FillDelta:
    exec_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    executed_ms: int | None


class UpdateApplier:
    def __init__(
        self, factory: SessionFactory, *, on_committed: Callable[[], None] = lambda: None
    ) -> None:
        self._factory = factory
        self._on_committed = on_committed

    async def apply(
        self, report: OrderReport | ExecutionReport, *, dry_run: bool = False
    ) -> Applied:
        """Apply one report in its own transaction; ``dry_run`` rolls it back."""
        faults.checkpoint("update.received")
        key = symbol_lock_key(report.category, report.symbol)
        try:
            async with locked_transaction(self._factory, key) as session:
                rows = _Batch()
                result = await self._one(session, report, rows)
                await rows.write(session)
                if dry_run:
                    raise _DryRun(result)
        except _DryRun as undone:
            return undone.result
        if result.action == "applied":
            self._on_committed()
        faults.checkpoint("update.applied")
        return result

    async def apply_many(self, reports: Sequence[OrderReport | ExecutionReport]) -> list[Applied]:
        """Apply ``reports`` in order, all in one transaction (all or nothing)."""
        for _ in reports:
            faults.checkpoint("update.received")
        keys = {symbol_lock_key(r.category, r.symbol) for r in reports}
        async with locked_transaction(self._factory, keys) as session:
            rows = await _prefetch(session, reports)
            # One flush at commit: inserts of the same table go out as one statement.
            with session.no_autoflush:
                results = [await self._one(session, r, rows) for r in reports]
            await rows.write(session)
        if any(r.action == "applied" for r in results):
            self._on_committed()
        for _ in reports:
            faults.checkpoint("update.applied")
        return results

    async def _one(
        self, session: AsyncSession, report: OrderReport | ExecutionReport, rows: _Batch
    ) -> Applied:
        if isinstance(report, OrderReport):
            return await self._order_report(session, report, rows)
        return await self._execution_report(session, report, rows)

    # -- order topic: cumulative truth ---------------------------------------------------------

    async def _order_report(self, session: AsyncSession, r: OrderReport, rows: _Batch) -> Applied:
        reported = map_status(r.status, r.cum_exec_qty)
        order, external = await self._find_or_create(session, r.order_link_id, r.order_id, r, rows)
        if reported is None:
            return await self._quarantine(session, order, r, f"unknown orderStatus {r.status!r}")
        verdict = decide(
            OrderStatus(order.status),
            order.filled_qty,
            order.exchange_updated_ms,
            reported,
            r.cum_exec_qty,
            r.updated_ms,
        )
        if verdict.action is Action.QUARANTINE:
            return await self._quarantine(session, order, r, verdict.reason)
        if verdict.action is Action.IGNORE:
            return Applied("ignored", order.id, order.status, reason=verdict.reason)

        await _leave_doubt(session, order, r.order_id)
        fill = None
        if r.cum_exec_qty > order.filled_qty:
            qty = r.cum_exec_qty - order.filled_qty
            value = r.cum_exec_value - order.cum_exec_value
            price = _price(value, qty, r)
            fill = _FillDelta(
                exec_id=f"cum:{r.order_id or r.order_link_id}:{r.cum_exec_qty}",
                qty=qty,
                price=price,
                fee=r.cum_exec_fee - order.cum_fee,
                executed_ms=r.updated_ms,
            )
        if r.reject_reason and reported is OrderStatus.REJECTED:
            order.reject_code = "EXCHANGE_REJECTED"
            order.reject_reason = r.reject_reason
        if fill is not None:
            # The exchange's cumulative figures are the truth; adopt them exactly.
            order.cum_exec_value = r.cum_exec_value
            order.cum_fee = r.cum_exec_fee
            order.avg_fill_price = _quantize(r.avg_price or r.cum_exec_value / r.cum_exec_qty)
        changed = await self._transition(
            session, order, verdict.status, fill, r.order_id, r.updated_ms, rows
        )
        if not changed:
            return Applied("ignored", order.id, order.status)
        return Applied("applied", order.id, order.status, fill.qty if fill else None, external)

    # -- execution topic: one fill, identified by execId -----------------------------------------

    async def _execution_report(
        self, session: AsyncSession, e: ExecutionReport, rows: _Batch
    ) -> Applied:
        if e.exec_type not in {"Trade", "BustTrade"} and e.exec_type:
            return Applied("ignored", reason=f"execType {e.exec_type} moves no position")
        seen = (
            e.exec_id in rows.exec_ids
            or (await session.exec(select(Fill.id).where(col(Fill.exec_id) == e.exec_id))).first()
            is not None
        )
        if seen:
            return Applied("ignored", reason="execution already applied")
        order, external = await self._find_or_create(session, e.order_link_id, e.order_id, e, rows)
        if e.order_qty is not None and e.leaves_qty is not None:
            cum_after = e.order_qty - e.leaves_qty
        else:
            cum_after = order.filled_qty + e.exec_qty
        if cum_after <= order.filled_qty:
            # The order stream already reported this fill cumulatively.
            return Applied("ignored", order.id, order.status, reason="fill already counted")
        qty = cum_after - order.filled_qty
        fee = e.exec_fee if qty == e.exec_qty else _quantize(e.exec_fee * qty / e.exec_qty)
        fill = _FillDelta(e.exec_id, qty, e.exec_price, fee, e.exec_ms)
        filled = e.leaves_qty == 0 and cum_after >= order.qty
        reported = OrderStatus.FILLED if filled else OrderStatus.PARTIALLY_FILLED
        verdict = decide(
            OrderStatus(order.status), order.filled_qty, None, reported, cum_after, None
        )
        if verdict.action is Action.QUARANTINE:
            return await self._quarantine(session, order, e, verdict.reason)
        await _leave_doubt(session, order, e.order_id)
        order.cum_exec_value += _quantize(qty * e.exec_price)
        order.cum_fee += fee
        order.avg_fill_price = _quantize(order.cum_exec_value / cum_after)
        await self._transition(session, order, verdict.status, fill, e.order_id, None, rows)
        return Applied("applied", order.id, order.status, qty, external)

    # -- shared ----------------------------------------------------------------------------

    async def _transition(
        self,
        session: AsyncSession,
        order: Order,
        status: OrderStatus,
        fill: _FillDelta | None,
        exchange_order_id: str,
        updated_ms: int | None,
        rows: _Batch,
    ) -> bool:
        before = OrderStatus(order.status)
        if exchange_order_id and not order.exchange_order_id:
            order.exchange_order_id = exchange_order_id
            rows.remember(order)
        if updated_ms is not None:
            order.exchange_updated_ms = max(order.exchange_updated_ms or 0, updated_ms)
        changed = status != before
        if not changed and fill is None:
            return False
        # Status and quantity change together, so the order's history gets one row.
        order.status = status
        order.updated_at = utcnow()
        position = None
        if fill is not None:
            assert order.id is not None
            now = utcnow()
            rows.fills.append(
                {
                    "exec_id": fill.exec_id,
                    "order_id": order.id,
                    "symbol": order.symbol,
                    "category": order.category,
                    "side": order.side,
                    "qty": fill.qty,
                    "price": fill.price,
                    "fee": fill.fee,
                    "executed_at": ms_to_datetime(fill.executed_ms) or now,
                    "created_at": now,
                }
            )
            order.filled_qty += fill.qty
            rows.exec_ids.add(fill.exec_id)
            position = await apply_fill_to_position(
                session,
                category=order.category,
                symbol=order.symbol,
                position_idx=order.position_idx,
                side=order.side,
                qty=fill.qty,
                price=fill.price,
                fee=fill.fee,
                known=rows.positions,
                snapshots=rows.snapshots,
            )
        event_type = _event_type(before, status, fill is not None)
        if event_type is not None:
            rows.events.append(
                new_event(
                    event_type,
                    signal_id=order.signal_id,
                    order=order_payload(order),
                    fill=_fill_payload(fill),
                    position=position_payload(position) if position is not None else None,
                )
            )
        if status is OrderStatus.REJECTED:
            await settle_signal(
                session,
                order,
                accepted=False,
                code=order.reject_code or "EXCHANGE_REJECTED",
                message=order.reject_reason or "rejected by the exchange",
            )
        return True

    async def _find_or_create(
        self,
        session: AsyncSession,
        link_id: str,
        exchange_id: str,
        report: OrderReport | ExecutionReport,
        rows: _Batch,
    ) -> tuple[Order, bool]:
        order = rows.by_link_id.get(link_id) if link_id else None
        if order is None and exchange_id:
            order = rows.by_exchange_id.get(exchange_id)
        if order is not None:
            fresh = order.client_order_id in rows.fresh_external
            rows.fresh_external.discard(order.client_order_id)
            return order, fresh
        if link_id:
            order = (
                await session.exec(
                    select(Order).where(col(Order.client_order_id) == link_id).with_for_update()
                )
            ).first()
        if order is None and exchange_id:
            order = (
                await session.exec(
                    select(Order)
                    .where(col(Order.exchange_order_id) == exchange_id)
                    .with_for_update()
                )
            ).first()
        if order is not None:
            rows.remember(order)
            return order, False
        (order,) = await _create_external(session, [report], rows)
        return order, True

    async def _quarantine(
        self,
        session: AsyncSession,
        order: Order,
        report: OrderReport | ExecutionReport,
        reason: str,
    ) -> Applied:
        log.warning("quarantined a report for order %s: %s", order.client_order_id, reason)
        session.add(
            QuarantinedUpdate(
                reason=reason,
                order_id=order.id,
                client_order_id=order.client_order_id,
                exchange_order_id=report.order_id or order.exchange_order_id,
                payload=json_safe(dict(report.raw)),
            )
        )
        return Applied("quarantined", order.id, order.status, reason=reason)


async def _leave_doubt(session: AsyncSession, order: Order, exchange_order_id: str) -> None:
    """The stream can beat the REST answer: the intent row is committed, so it is found here,
    and the report proves the exchange has the order."""
    if order.status in {OrderStatus.PENDING_SUBMIT, OrderStatus.SUBMIT_UNKNOWN}:
        await mark_accepted(session, order, exchange_order_id or None)


async def _prefetch(
    session: AsyncSession, reports: Sequence[OrderReport | ExecutionReport]
) -> _Batch:
    """Read and lock, in two statements, the orders and positions a batch will touch."""
    rows = _Batch()
    link_ids = {r.order_link_id for r in reports if r.order_link_id}
    exchange_ids = {r.order_id for r in reports if r.order_id}
    found = (
        await session.exec(
            select(Order)
            .where(
                col(Order.client_order_id).in_(link_ids)
                | col(Order.exchange_order_id).in_(exchange_ids)
            )
            .order_by(col(Order.id))
            .with_for_update()
        )
    ).all()
    for order in found:
        rows.remember(order)
    symbols = {r.symbol for r in reports}
    positions = (
        await session.exec(
            select(Position)
            .where(col(Position.symbol).in_(symbols))
            .order_by(col(Position.id))
            .with_for_update()
        )
    ).all()
    for position in positions:
        rows.positions[(position.category, position.symbol, position.position_idx)] = position
    unknown: dict[str, OrderReport | ExecutionReport] = {}
    for r in reports:
        if isinstance(r, ExecutionReport) and r.exec_type not in {"Trade", "BustTrade", ""}:
            continue  # ignored without looking at its order
        known = (r.order_link_id and r.order_link_id in rows.by_link_id) or (
            r.order_id and r.order_id in rows.by_exchange_id
        )
        if not known:
            unknown.setdefault(r.order_link_id or f"ext-{r.order_id}", r)
    if unknown:
        for order in await _create_external(session, list(unknown.values()), rows):
            rows.fresh_external.add(order.client_order_id)
    return rows


async def _create_external(
    session: AsyncSession, reports: Sequence[OrderReport | ExecutionReport], rows: _Batch
) -> list[Order]:
    """Record orders placed outside this service (one flush for all: their ids are needed)."""
    orders = [_external_order(r) for r in reports]
    session.add_all(orders)
    await session.flush()
    for order in orders:
        rows.remember(order)
        add_event(
            session,
            new_event(EventType.ORDER_CREATED, signal_id=None, order=order_payload(order)),
        )
        log.info(
            "recording external order %s (%s %s) placed outside this service",
            order.exchange_order_id,
            order.side,
            order.symbol,
        )
    return orders


def _external_order(report: OrderReport | ExecutionReport) -> Order:
    if isinstance(report, OrderReport):
        qty, price, order_type = report.qty, report.price, report.order_type
        tif = report.time_in_force or None
        created = ms_to_datetime(report.created_ms)
        reduce_only, idx = report.reduce_only, report.position_idx
    else:
        qty = report.order_qty or report.exec_qty
        price, order_type, tif, created = None, str(report.raw.get("orderType", "")), None, None
        reduce_only, idx = False, 0
    client_id = report.order_link_id or f"ext-{report.order_id}"[:36]
    now = utcnow()
    return Order(
        client_order_id=client_id,
        exchange_order_id=report.order_id or None,
        signal_id=None,
        exchange="external",
        category=report.category,
        symbol=report.symbol,
        side=report.side,
        order_type=(order_type or "unknown").lower(),
        time_in_force=tif,
        qty=qty,
        price=price or None,
        reduce_only=reduce_only,
        position_idx=idx,
        status=OrderStatus.SUBMITTED,
        is_external=True,
        created_at=created or now,
        updated_at=now,
    )


def _price(value: Decimal, qty: Decimal, r: OrderReport) -> Decimal:
    if value > 0:
        return _quantize(value / qty)
    # A report without values (should not happen on Bybit): fall back to its prices.
    return r.avg_price or r.price or Decimal(0)


def _quantize(value: Decimal) -> Decimal:
    from om_core.positions.math import quantize

    return quantize(value)


def _fill_payload(fill: _FillDelta | None) -> dict[str, Any] | None:
    if fill is None:
        return None
    return {
        "qty": decimal_str(fill.qty),
        "price": decimal_str(fill.price),
        "fee": decimal_str(fill.fee),
    }


def _event_type(before: OrderStatus, after: OrderStatus, filled: bool) -> EventType | None:
    """The event a change publishes: named for where the order is now."""
    if after == before and not filled:
        return None
    if after is OrderStatus.FILLED:
        return EventType.ORDER_FILLED
    if after in {
        OrderStatus.CANCELLED,
        OrderStatus.PARTIALLY_FILLED_CANCELLED,
        OrderStatus.DEACTIVATED,
    }:
        return EventType.ORDER_CANCELLED
    if after is OrderStatus.REJECTED:
        return EventType.ORDER_REJECTED
    if filled:
        return EventType.ORDER_PARTIALLY_FILLED
    return None
