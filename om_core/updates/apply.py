"""Apply exchange reports: order state, fills, positions, snapshots and events, atomically.

The rules (``docs/events.md``):

* **Executions are the truth for fills.** Each is booked once, by ``exec_id``, at its own
  quantity, price and fee (in its currency; negative = a rebate).
* **Order reports are the truth for an order's status and cumulative figures.** When one
  says more has filled than the executions booked so far, the gap is booked as one
  *inferred* fill (``exec_id`` ``inferred:<order id>``) at the reported average, so positions
  never wait; executions arriving later replace it, quantity for quantity. The exchange's
  cumulative value, when reported, is the order's average.
* **Positions take an order's fills as one trade** (:mod:`om_core.positions.store`): the
  same final order, fills, fees and position whatever order reports and executions arrive
  in, however often.

Each report is one transaction under its symbol's lock (the same lock decisions take), so a
position is never updated by two reports at once, on any number of service instances, and
every decision sees every committed fill. Events are written to the outbox in the same
transaction. Under load, reports that arrived together are applied in one transaction
(:meth:`UpdateApplier.apply_many`), in arrival order, with the same results as one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select

from om_core import faults
from om_core.db.locks import RollBack, locked_transaction, symbol_lock_key
from om_core.db.models import (
    Fill,
    Order,
    Position,
    PositionContribution,
    PositionSnapshot,
    QuarantinedUpdate,
    table,
)
from om_core.db.session import AsyncSession, SessionFactory
from om_core.db.types import utcnow
from om_core.events.outbox import add_event, insert_events
from om_core.events.payloads import (
    EventType,
    decimal_str,
    new_event,
    order_payload,
    position_payload,
)
from om_core.instruments import Instruments
from om_core.orders.lifecycle import mark_accepted, settle_signal
from om_core.orders.status import IN_DOUBT, TERMINAL, OrderStatus
from om_core.orders.transitions import Action, decide, normalize
from om_core.positions.math import average_price, quantize, trade_value
from om_core.positions.store import PositionKey, TradeDelta, add_fees, contribute, counts_for
from om_core.signals.store import json_safe
from om_plugins.reports import ExecutionReport, Fee, OrderReport, ReasonCode
from om_plugins.types import Category, Instrument, PositionMode, QtyUnit

__all__ = ["Applied", "UpdateApplier", "settle_fee"]

log = logging.getLogger(__name__)

_FILLS = table(Fill)
_SNAPSHOTS = table(PositionSnapshot)
_ZERO = Decimal(0)
_ONE = Decimal(1)

ExchangeReport = OrderReport | ExecutionReport
PositionModes = Callable[[Category, str], Any]


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
class _Booked:
    """What the fills booked for one order add up to, and its inferred fill if any."""

    qty: Decimal = _ZERO
    value: Decimal = _ZERO
    fees_settled: Decimal = _ZERO
    fees: dict[str, Decimal] = field(default_factory=dict)
    inferred: Fill | None = None

    def add(self, delta: TradeDelta) -> None:
        self.qty += delta.qty
        self.value += delta.value
        self.fees_settled += delta.fees_settled
        for currency, amount in delta.fees.items():
            self.fees[currency] = self.fees.get(currency, _ZERO) + amount


@dataclass(slots=True)
class _Batch:
    """One transaction's rows: those it read already (locked), so a batch reads each one
    once, and those it will insert at the end."""

    instruments: dict[tuple[Category, str], Instrument | None] = field(default_factory=dict)
    modes: dict[tuple[Category, str], PositionMode] = field(default_factory=dict)
    by_link_id: dict[str, Order] = field(default_factory=dict)
    by_exchange_id: dict[str, Order] = field(default_factory=dict)
    positions: dict[PositionKey, Position] = field(default_factory=dict)
    contributions: dict[int, PositionContribution] = field(default_factory=dict)
    booked: dict[int, _Booked] = field(default_factory=dict)
    #: Executions booked already (in the database or staged here).
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
        for booked in self.booked.values():
            fill = booked.inferred
            if fill is not None and fill.qty <= 0:
                # Wholly replaced by real executions.
                if fill.id is None:
                    session.expunge(fill)
                else:
                    # AsyncSession.delete is a coroutine; the sync session's marks the row.
                    session.sync_session.delete(fill)
                booked.inferred = None
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

    def instrument(self, category: str, symbol: str) -> Instrument | None:
        return self.instruments.get((Category(category), symbol))


def settle_fee(
    fee: Fee | None, instrument: Instrument | None, category: str, price: Decimal
) -> tuple[Decimal, Decimal]:
    """A fee in the instrument's PnL coin, and the part of it paid in the base coin (spot:
    it shrinks the holding), counted in the base coin.

    A base-coin fee on a quote-settled instrument is converted at the fill's price. A fee in
    a coin the instrument neither settles in nor trades is kept per currency only.
    """
    if fee is None or not fee.amount:
        return _ZERO, _ZERO
    if instrument is None:
        if not fee.currency:
            return fee.amount, _ZERO
        log.warning("fee of %s %s kept unconverted: instrument unknown", fee.amount, fee.currency)
        return _ZERO, _ZERO
    pnl_coin = instrument.pnl_coin
    if not fee.currency or fee.currency == pnl_coin:
        return fee.amount, _ZERO
    if fee.currency == instrument.base_coin:
        base_fee = fee.amount if category == Category.SPOT.value else _ZERO
        return quantize(fee.amount * price), base_fee
    if fee.currency == instrument.quote_coin and price:
        return quantize(fee.amount / price), _ZERO
    log.warning(
        "fee of %s %s kept unconverted: not a coin of %s", fee.amount, fee.currency, pnl_coin
    )
    return _ZERO, _ZERO


class UpdateApplier:
    def __init__(
        self,
        factory: SessionFactory,
        instruments: Instruments,
        *,
        position_mode: PositionModes | None = None,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._factory = factory
        self._instruments = instruments
        #: ``await position_mode(category, symbol)``: needed for orders placed elsewhere,
        #: whose executions do not say which side of a hedge-mode account they belong to.
        self._position_mode = position_mode
        self._on_committed = on_committed

    async def apply(self, report: ExchangeReport, *, dry_run: bool = False) -> Applied:
        """Apply one report in its own transaction; ``dry_run`` rolls it back."""
        faults.checkpoint("update.received")
        rows = await self._prepare([report])
        key = symbol_lock_key(report.category.value, report.symbol)
        try:
            async with locked_transaction(self._factory, key) as session:
                await _prefetch(session, [report], rows)
                with session.no_autoflush:
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

    async def apply_many(self, reports: Sequence[ExchangeReport]) -> list[Applied]:
        """Apply ``reports`` in order, all in one transaction (all or nothing)."""
        for _ in reports:
            faults.checkpoint("update.received")
        rows = await self._prepare(reports)
        keys = {symbol_lock_key(r.category.value, r.symbol) for r in reports}
        async with locked_transaction(self._factory, keys) as session:
            await _prefetch(session, reports, rows)
            # One flush at commit: inserts of the same table go out as one statement.
            with session.no_autoflush:
                results = [await self._one(session, r, rows) for r in reports]
            await rows.write(session)
        if any(r.action == "applied" for r in results):
            self._on_committed()
        for _ in reports:
            faults.checkpoint("update.applied")
        return results

    async def _prepare(self, reports: Iterable[ExchangeReport]) -> _Batch:
        """Exchange reads, before any lock is taken: the instruments whose coins settle
        fees, and the position mode (orders placed elsewhere and seen first through their
        executions need it). Both are cached by the exchange side."""
        rows = _Batch()
        for r in reports:
            key = (r.category, r.symbol)
            if key not in rows.instruments:
                rows.instruments[key] = await self._instruments.find(*key)
            if (
                self._position_mode is not None
                and r.category is not Category.SPOT
                and key not in rows.modes
            ):
                rows.modes[key] = await self._position_mode(*key)
        return rows

    async def _one(self, session: AsyncSession, report: ExchangeReport, rows: _Batch) -> Applied:
        if isinstance(report, OrderReport):
            return await self._order_report(session, report, rows)
        return await self._execution_report(session, report, rows)

    # -- order reports: status and cumulative figures ---------------------------------------------

    async def _order_report(self, session: AsyncSession, r: OrderReport, rows: _Batch) -> Applied:
        order, external = await self._find_or_create(session, r, rows)
        instrument = rows.instrument(order.category, order.symbol)
        if order.is_external:
            _refresh_external(order, r)
        await self._settle_pending_position(session, order, r, rows)
        reported = normalize(r.status, r.filled_qty)
        updated_ms = _ms(r)
        verdict = decide(
            OrderStatus(order.status),
            order.filled_qty,
            order.exchange_updated_ms,
            reported,
            r.filled_qty,
            updated_ms,
        )
        if verdict.action is Action.QUARANTINE:
            return await self._quarantine(session, order, r, verdict.reason)
        older = (
            order.exchange_updated_ms is not None
            and updated_ms is not None
            and updated_ms < order.exchange_updated_ms
        )
        before_filled = order.filled_qty
        if r.filled_qty >= order.filled_qty and not older:
            _adopt_cumulative(order, r, instrument)
        if verdict.action is Action.IGNORE:
            return Applied("ignored", order.id, order.status, reason=verdict.reason)

        await _leave_doubt(session, order, r.exchange_order_id)
        before = OrderStatus(order.status)
        # Status and quantity change together (before any flush), so the order's history
        # gets one row for them.
        order.status = verdict.status
        fill = await self._infer_gap(session, order, r, rows)
        if verdict.status in TERMINAL - {OrderStatus.FILLED} and r.reason is not None:
            order.reject_code = r.reason.code[:32] or ReasonCode.EXCHANGE_REJECTED.value
            order.exchange_code = r.reason.exchange_code[:64] or None
            order.exchange_message = r.reason.exchange_message or None
            order.reject_reason = r.reason.exchange_message or r.reason.code
        changed = await self._transition(
            session,
            order,
            before,
            fill,
            r.exchange_order_id,
            updated_ms,
            rows,
            grew=order.filled_qty > before_filled,
        )
        if not changed:
            return Applied("ignored", order.id, order.status)
        return Applied("applied", order.id, order.status, fill[0].qty if fill else None, external)

    async def _infer_gap(
        self, session: AsyncSession, order: Order, r: OrderReport, rows: _Batch
    ) -> tuple[TradeDelta, dict[str, Any]] | None:
        """Book what the order report says filled beyond the executions booked, as the
        order's inferred fill."""
        assert order.id is not None
        booked = rows.booked.setdefault(order.id, _Booked())
        gap = order.filled_qty - booked.qty
        if gap <= 0:
            return None
        instrument = rows.instrument(order.category, order.symbol)
        inverse, size = _units(order.category, instrument)
        value = order.cum_exec_value - booked.value
        if value <= 0:
            price = order.avg_fill_price or r.price or _ZERO
            value = trade_value(gap, price, inverse=inverse, contract_size=size) if price else _ZERO
        price = average_price(gap, value, inverse=inverse, contract_size=size)
        fees = {
            c: a - booked.fees.get(c, _ZERO)
            for c, a in _fee_map(order.fees).items()
            if a != booked.fees.get(c, _ZERO)
        }
        delta = TradeDelta(qty=gap, value=value, fees=fees)
        for currency, amount in fees.items():
            settled, base_fee = settle_fee(Fee(amount, currency), instrument, order.category, price)
            delta.fees_settled += settled
            delta.base_fee += base_fee
        fill = booked.inferred
        if fill is None:
            fill = Fill(
                exec_id=f"inferred:{order.id}",
                order_id=order.id,
                symbol=order.symbol,
                category=order.category,
                side=order.side,
                qty=_ZERO,
                price=_ZERO,
                inferred=True,
                executed_at=r.updated_at or utcnow(),
            )
            session.add(fill)
            booked.inferred = fill
            rows.exec_ids.add(fill.exec_id)
        fill.qty += delta.qty
        fill.value += delta.value
        fill.fee_settled += delta.fees_settled
        fill.price = average_price(fill.qty, fill.value, inverse=inverse, contract_size=size)
        # One row per order holds the gap; its fee is in one currency (the largest gap's).
        if not fill.fee_currency and fees:
            fill.fee_currency = _main_fee(fees, {})[0]
        fill.fee += fees.get(fill.fee_currency, _ZERO)
        booked.add(delta)
        position = await self._position_row(session, order, rows)
        if fill.qty == delta.qty:  # a new inferred fill, or one emptied and used again
            fill.sized = counts_for(position, fill.executed_at)
        applied = delta if fill.sized else delta.fees_only()
        contribution_id = await self._contribute(session, order, applied, rows)
        if contribution_id is not None and fill.contribution_id is None:
            fill.contribution_id = contribution_id
        return delta, _fill_payload(fill, qty=delta.qty, price=price, fees=fees)

    # -- executions: one fill each ----------------------------------------------------------------

    async def _execution_report(
        self, session: AsyncSession, e: ExecutionReport, rows: _Batch
    ) -> Applied:
        if not e.kind.moves_position:
            return Applied("ignored", reason=f"a {e.kind.value} execution moves no position")
        if e.exec_id in rows.exec_ids:
            return Applied("ignored", reason="execution already applied")
        order, external = await self._find_or_create(session, e, rows)
        assert order.id is not None
        booked = rows.booked.setdefault(order.id, _Booked())
        instrument = rows.instrument(order.category, order.symbol)
        inverse, size = _units(order.category, instrument)
        value = (
            quantize(e.value)
            if e.value is not None
            else trade_value(e.qty, e.price, inverse=inverse, contract_size=size)
        )
        settled, base_fee = settle_fee(e.fee, instrument, order.category, e.price)
        real = TradeDelta(
            qty=e.qty,
            value=value,
            fees_settled=settled,
            base_fee=base_fee,
            fees={e.fee.currency: e.fee.amount} if e.fee is not None and e.fee.amount else {},
        )
        # The part of an inferred fill this execution stands for is taken out of it.
        removed = _covered_part(booked.inferred, e.qty, instrument)
        filled_after = max(order.filled_qty, booked.qty + real.qty - removed.qty)
        grew = filled_after > order.filled_qty
        reported = order_status_after(order, filled_after) if grew else OrderStatus(order.status)
        verdict = decide(
            OrderStatus(order.status), order.filled_qty, None, reported, filled_after, None
        )
        if verdict.action is Action.QUARANTINE:
            return await self._quarantine(session, order, e, verdict.reason)

        await _leave_doubt(session, order, e.exchange_order_id)
        position = await self._position_row(session, order, rows)
        # An execution the exchange's reconciled figures hold already adds its fee only.
        real_counts = counts_for(position, e.executed_at)
        delta = TradeDelta()
        delta.add(real if real_counts else real.fees_only())
        replaced_in: int | None = None
        if not removed.empty:
            assert booked.inferred is not None
            replaced_in = booked.inferred.contribution_id
            counted = removed if booked.inferred.sized else removed.fees_only()
            if replaced_in is None:
                pass  # the inferred part never moved the position
            elif position is not None and position.contribution_id == replaced_in:
                delta.add(counted.negated())
            else:
                # The inferred fill counted in a contribution that is closed now (another
                # order traded since, or reconciliation set the position): only what this
                # execution adds beyond it can still move the position.
                log.warning(
                    "execution %s replaces an inferred fill of a closed contribution; the "
                    "position keeps the inferred price",
                    e.exec_id,
                )
                delta = _scaled(real, (e.qty - removed.qty) / e.qty) if real_counts else delta
            _shrink(session, booked, removed)
        booked.add(real)
        booked.add(removed.negated())
        rows.exec_ids.add(e.exec_id)
        before = OrderStatus(order.status)
        order.status = verdict.status
        if grew:
            order.filled_qty = filled_after
            order.cum_exec_value = booked.value
            order.fees = _fee_strings(booked.fees)
            order.cum_fee = booked.fees_settled
            order.avg_fill_price = average_price(
                booked.qty, booked.value, inverse=inverse, contract_size=size
            )
        contribution_id = await self._contribute(session, order, delta, rows) or replaced_in
        now = utcnow()
        rows.fills.append(
            {
                "exec_id": e.exec_id,
                "order_id": order.id,
                "symbol": order.symbol,
                "category": order.category,
                "side": order.side,
                "qty": e.qty,
                "price": e.price,
                "value": value,
                "fee": e.fee.amount if e.fee is not None else _ZERO,
                "fee_currency": e.fee.currency if e.fee is not None else "",
                "fee_settled": settled,
                "is_maker": e.is_maker,
                "kind": e.kind.value,
                "inferred": False,
                "sized": real_counts,
                "contribution_id": contribution_id,
                "executed_at": e.executed_at,
                "created_at": now,
            }
        )
        payload = _fill_payload_execution(e, value, settled, removed.qty)
        changed = await self._transition(
            session,
            order,
            before,
            (real, payload) if grew else None,
            e.exchange_order_id,
            None,
            rows,
            grew=grew,
        )
        if not changed:
            return Applied("applied", order.id, order.status, reason="replaced an inferred fill")
        return Applied("applied", order.id, order.status, e.qty - removed.qty, external)

    # -- positions ---------------------------------------------------------------------------------

    async def _contribute(
        self, session: AsyncSession, order: Order, delta: TradeDelta, rows: _Batch
    ) -> int | None:
        if delta.empty or _side_unknown(order, rows):
            return None
        instrument = rows.instrument(order.category, order.symbol)
        _, size = _units(order.category, instrument)
        _, contribution = await contribute(
            session,
            order,
            delta,
            contract_size=size,
            positions=rows.positions,
            contributions=rows.contributions,
            snapshots=rows.snapshots,
        )
        return contribution.id

    async def _position_row(
        self, session: AsyncSession, order: Order, rows: _Batch
    ) -> Position | None:
        """The position ``order`` trades, locked, if it exists already."""
        if _side_unknown(order, rows):
            return None
        key = (order.category, order.symbol, order.position_idx)
        position = rows.positions.get(key)
        if position is None:
            position = (
                await session.exec(
                    select(Position)
                    .where(
                        col(Position.category) == order.category,
                        col(Position.symbol) == order.symbol,
                        col(Position.position_idx) == order.position_idx,
                    )
                    .with_for_update()
                )
            ).first()
            if position is not None:
                rows.positions[key] = position
        return position

    async def _settle_pending_position(
        self, session: AsyncSession, order: Order, r: OrderReport, rows: _Batch
    ) -> None:
        """An order placed elsewhere, seen so far only through its executions: its order
        report says what it is, and fills that waited for its position side move it now."""
        if not order.awaiting_report:
            return
        waited = _side_unknown(order, rows)
        order.position_idx = r.position_idx
        order.awaiting_report = False
        if not waited:
            return
        assert order.id is not None
        waiting = list(
            (
                await session.exec(
                    select(Fill).where(
                        col(Fill.order_id) == order.id, col(Fill.contribution_id).is_(None)
                    )
                )
            ).all()
        )
        staged = [
            f for f in rows.fills if f["order_id"] == order.id and f["contribution_id"] is None
        ]
        instrument = rows.instrument(order.category, order.symbol)
        delta = TradeDelta()
        for qty, value, price, fee, currency in [
            (w.qty, w.value, w.price, w.fee, w.fee_currency) for w in waiting
        ] + [(f["qty"], f["value"], f["price"], f["fee"], f["fee_currency"]) for f in staged]:
            settled, base_fee = settle_fee(Fee(fee, currency), instrument, order.category, price)
            delta.add(TradeDelta(qty, value, settled, base_fee, {currency: fee} if fee else {}))
        contribution_id = await self._contribute(session, order, delta, rows)
        for w in waiting:
            w.contribution_id = contribution_id
        for f in staged:
            f["contribution_id"] = contribution_id

    # -- shared ----------------------------------------------------------------------------

    async def _transition(
        self,
        session: AsyncSession,
        order: Order,
        before: OrderStatus,
        fill: tuple[TradeDelta, dict[str, Any]] | None,
        exchange_order_id: str,
        updated_ms: int | None,
        rows: _Batch,
        *,
        grew: bool,
    ) -> bool:
        """Finish a change of ``order`` (its new status is set already) from ``before``:
        the event it publishes, and the signal's outcome when the exchange rejected it."""
        status = OrderStatus(order.status)
        if exchange_order_id and not order.exchange_order_id:
            order.exchange_order_id = exchange_order_id
            rows.remember(order)
        if updated_ms is not None:
            order.exchange_updated_ms = max(order.exchange_updated_ms or 0, updated_ms)
        changed = status != before
        if not changed and not grew:
            return False
        order.updated_at = utcnow()
        position = None
        if fill is not None:
            position = _position_of(order, rows)
        event_type = _event_type(before, status, grew)
        if event_type is not None:
            rows.events.append(
                new_event(
                    event_type,
                    signal_id=order.signal_id,
                    order=order_payload(order),
                    fill=fill[1] if fill is not None and grew else None,
                    position=position_payload(position) if position is not None else None,
                )
            )
        if status is OrderStatus.REJECTED:
            await settle_signal(
                session,
                order,
                accepted=False,
                code=order.reject_code or ReasonCode.EXCHANGE_REJECTED.value,
                message=order.reject_reason or "rejected by the exchange",
            )
        return True

    async def _find_or_create(
        self, session: AsyncSession, report: ExchangeReport, rows: _Batch
    ) -> tuple[Order, bool]:
        link_id, exchange_id = report.client_order_id, report.exchange_order_id
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
            await _load_booked(session, [order], rows)
            return order, False
        (order,) = await _create_external(session, [report], rows)
        return order, True

    async def _quarantine(
        self,
        session: AsyncSession,
        order: Order,
        report: ExchangeReport,
        reason: str,
    ) -> Applied:
        log.warning("quarantined a report for order %s: %s", order.client_order_id, reason)
        session.add(
            QuarantinedUpdate(
                reason=reason,
                order_id=order.id,
                client_order_id=order.client_order_id,
                exchange_order_id=report.exchange_order_id or order.exchange_order_id,
                payload=json_safe(dict(report.raw) or _describe(report)),
            )
        )
        return Applied("quarantined", order.id, order.status, reason=reason)


def order_status_after(order: Order, filled: Decimal) -> OrderStatus:
    """The status executions alone prove: filled once the order's quantity (in the same
    unit) has filled, else partially filled. Whether the rest was cancelled only the order
    report says."""
    # A quote-coin quantity, or one not known yet (0), cannot be compared with fills.
    comparable = order.qty_unit != QtyUnit.QUOTE.value and order.qty > 0
    if comparable and filled >= order.qty:
        return OrderStatus.FILLED
    return OrderStatus.PARTIALLY_FILLED


def _ms(report: OrderReport) -> int | None:
    if report.updated_at is None:
        return None
    return int(report.updated_at.timestamp() * 1000)


def _units(category: str, instrument: Instrument | None) -> tuple[bool, Decimal]:
    """(inverse?, contract size) of an instrument."""
    inverse = category == Category.INVERSE.value
    if instrument is not None and instrument.qty_unit is QtyUnit.CONTRACTS:
        return True, instrument.contract_size
    return inverse, _ONE


def _fee_map(fees: dict[str, str] | None) -> dict[str, Decimal]:
    return {c: Decimal(a) for c, a in (fees or {}).items()}


def _fee_strings(fees: dict[str, Decimal]) -> dict[str, str]:
    return add_fees({}, fees)


def _main_fee(total: dict[str, Decimal], booked: dict[str, Decimal]) -> tuple[str, Decimal]:
    """The currency of the largest fee gap, and that gap: what an inferred fill shows."""
    gaps = {c: a - booked.get(c, _ZERO) for c, a in total.items()}
    gaps = {c: a for c, a in gaps.items() if a}
    if not gaps:
        return "", _ZERO
    currency = max(sorted(gaps), key=lambda c: abs(gaps[c]))
    return currency, gaps[currency]


def _adopt_cumulative(order: Order, r: OrderReport, instrument: Instrument | None) -> None:
    """Take the exchange's cumulative figures (never older, never less filled ones): its
    cumulative value, when it gives one, is the order's average."""
    inverse, size = _units(order.category, instrument)
    order.filled_qty = r.filled_qty
    if r.filled_qty and r.filled_value is not None and r.filled_value > 0:
        order.cum_exec_value = quantize(r.filled_value)
        order.avg_fill_price = average_price(
            r.filled_qty, order.cum_exec_value, inverse=inverse, contract_size=size
        )
    elif r.filled_qty and r.avg_price is not None and r.avg_price > 0:
        order.avg_fill_price = quantize(r.avg_price)
        order.cum_exec_value = trade_value(
            r.filled_qty, r.avg_price, inverse=inverse, contract_size=size
        )
    if r.fees:
        fees = {f.currency: f.amount for f in r.fees}
        order.fees = _fee_strings(fees)
        price = order.avg_fill_price or _ZERO
        order.cum_fee = sum(
            (settle_fee(Fee(a, c), instrument, order.category, price)[0] for c, a in fees.items()),
            _ZERO,
        )


def _refresh_external(order: Order, r: OrderReport) -> None:
    """An order placed elsewhere first seen through its executions: its order report says
    what it really is."""
    order.qty = r.qty
    order.qty_unit = r.qty_unit.value
    if r.price is not None:
        order.price = r.price
    if r.order_type is not None:
        order.order_type = r.order_type.value
    if r.time_in_force is not None:
        order.time_in_force = r.time_in_force.value
    order.reduce_only = r.reduce_only


def _covered_part(inferred: Fill | None, qty: Decimal, instrument: Instrument | None) -> TradeDelta:
    """The share of ``inferred`` an execution of ``qty`` stands for (all of what is left of
    it when the execution covers it: no rounding remains behind)."""
    if inferred is None or inferred.qty <= 0:
        return TradeDelta()
    covered = min(qty, inferred.qty)
    if covered == inferred.qty:
        fee, value, settled = inferred.fee, inferred.value, inferred.fee_settled
    else:
        share = covered / inferred.qty
        fee = quantize(inferred.fee * share)
        value = quantize(inferred.value * share)
        settled = quantize(inferred.fee_settled * share)
    base_fee = _ZERO
    if fee:
        # Only whether the fee is in the base coin matters here, not the price.
        base_fee = settle_fee(Fee(fee, inferred.fee_currency), instrument, inferred.category, _ONE)[
            1
        ]
    return TradeDelta(
        qty=covered,
        value=value,
        fees_settled=settled,
        base_fee=base_fee,
        fees={inferred.fee_currency: fee} if fee else {},
    )


def _shrink(session: AsyncSession, booked: _Booked, removed: TradeDelta) -> None:
    fill = booked.inferred
    assert fill is not None
    fill.qty -= removed.qty
    if fill.qty <= 0:
        # Wholly replaced by real executions: what is left of its value and fees is
        # rounding, and the executions carry the truth. The row stays (empty) until the
        # batch is written, so a later report of the batch can use it again.
        fill.qty = fill.value = fill.fee = fill.fee_settled = _ZERO
        return
    fill.value -= removed.value
    fill.fee_settled -= removed.fees_settled
    for amount in removed.fees.values():
        fill.fee -= amount
    inverse = fill.category == Category.INVERSE.value
    fill.price = average_price(fill.qty, fill.value, inverse=inverse, contract_size=_ONE)


def _scaled(delta: TradeDelta, share: Decimal) -> TradeDelta:
    return TradeDelta(
        qty=delta.qty * share,
        value=quantize(delta.value * share),
        fees_settled=quantize(delta.fees_settled * share),
        base_fee=quantize(delta.base_fee * share),
        fees={c: quantize(a * share) for c, a in delta.fees.items()},
    )


def _side_unknown(order: Order, rows: _Batch) -> bool:
    """Executions do not say which side of a hedge-mode account they trade: an order seen
    only through them waits for its order report to reach a position."""
    mode = rows.modes.get((Category(order.category), order.symbol))
    return order.awaiting_report and mode is PositionMode.HEDGE


def _position_of(order: Order, rows: _Batch) -> Position | None:
    key = (order.category, order.symbol, order.position_idx)
    return None if _side_unknown(order, rows) else rows.positions.get(key)


async def _leave_doubt(session: AsyncSession, order: Order, exchange_order_id: str) -> None:
    """The stream can beat the REST answer: the intent row is committed, so it is found here,
    and the report proves the exchange has the order."""
    if order.status in IN_DOUBT:
        await mark_accepted(session, order, exchange_order_id or None)


async def _prefetch(session: AsyncSession, reports: Sequence[ExchangeReport], rows: _Batch) -> None:
    """Read and lock, in a few statements, the orders, fills and positions a batch touches."""
    link_ids = {r.client_order_id for r in reports if r.client_order_id}
    exchange_ids = {r.exchange_order_id for r in reports if r.exchange_order_id}
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
    await _load_booked(session, found, rows)
    exec_ids = {r.exec_id for r in reports if isinstance(r, ExecutionReport)}
    if exec_ids:
        seen = await session.exec(select(Fill.exec_id).where(col(Fill.exec_id).in_(exec_ids)))
        rows.exec_ids.update(seen.all())
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
    unknown: dict[str, ExchangeReport] = {}
    for r in reports:
        if isinstance(r, ExecutionReport) and not r.kind.moves_position:
            continue  # ignored without looking at its order
        known = (r.client_order_id and r.client_order_id in rows.by_link_id) or (
            r.exchange_order_id and r.exchange_order_id in rows.by_exchange_id
        )
        if not known:
            unknown.setdefault(r.client_order_id or f"ext-{r.exchange_order_id}", r)
    if unknown:
        for order in await _create_external(session, list(unknown.values()), rows):
            rows.fresh_external.add(order.client_order_id)


async def _load_booked(session: AsyncSession, orders: Sequence[Order], rows: _Batch) -> None:
    """What each order's booked fills add up to (in Python: SQLite keeps decimals as text)."""
    ids = [o.id for o in orders if o.id is not None and o.id not in rows.booked]
    if not ids:
        return
    for order_id in ids:
        rows.booked[order_id] = _Booked()
    fills = (await session.exec(select(Fill).where(col(Fill.order_id).in_(ids)))).all()
    for fill in fills:
        booked = rows.booked[fill.order_id]
        booked.qty += fill.qty
        booked.value += fill.value
        booked.fees_settled += fill.fee_settled
        if fill.fee:
            booked.fees[fill.fee_currency] = booked.fees.get(fill.fee_currency, _ZERO) + fill.fee
        if fill.inferred:
            booked.inferred = fill


async def _create_external(
    session: AsyncSession, reports: Sequence[ExchangeReport], rows: _Batch
) -> list[Order]:
    """Record orders placed outside this service (one flush for all: their ids are needed)."""
    orders = [_external_order(r, rows) for r in reports]
    session.add_all(orders)
    await session.flush()
    for order in orders:
        rows.remember(order)
        assert order.id is not None
        rows.booked[order.id] = _Booked()
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


def _external_order(report: ExchangeReport, rows: _Batch) -> Order:
    pending = False
    if isinstance(report, OrderReport):
        qty, price, unit = report.qty, report.price, report.qty_unit.value
        order_type = report.order_type.value if report.order_type else "other"
        tif = report.time_in_force.value if report.time_in_force else None
        created = report.created_at
        reduce_only, idx = report.reduce_only, report.position_idx
    else:
        # 0: not known until the order report says (executions need not carry it).
        qty, price, unit = report.order_qty or Decimal(0), None, QtyUnit.BASE.value
        order_type = report.order_type.value if report.order_type else "other"
        tif, created, reduce_only, idx = None, None, False, 0
        pending = True
    client_id = report.client_order_id or f"ext-{report.exchange_order_id}"[:36]
    now = utcnow()
    return Order(
        client_order_id=client_id,
        exchange_order_id=report.exchange_order_id or None,
        signal_id=None,
        exchange="external",
        category=report.category.value,
        symbol=report.symbol,
        side=report.side.value,
        order_type=order_type,
        time_in_force=tif,
        qty=qty,
        qty_unit=unit,
        price=price,
        reduce_only=reduce_only,
        position_idx=idx,
        awaiting_report=pending,
        status=OrderStatus.SUBMITTED,
        is_external=True,
        created_at=created or now,
        updated_at=now,
    )


def _fill_payload(
    fill: Fill, *, qty: Decimal, price: Decimal, fees: dict[str, Decimal]
) -> dict[str, Any]:
    currency, amount = _main_fee(fees, {})
    return {
        "exec_id": fill.exec_id,
        "qty": decimal_str(qty),
        "price": decimal_str(price),
        "fee": decimal_str(amount),
        "fee_currency": currency or None,
        "inferred": True,
    }


def _fill_payload_execution(
    e: ExecutionReport, value: Decimal, settled: Decimal, replaced: Decimal
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "exec_id": e.exec_id,
        "qty": decimal_str(e.qty),
        "price": decimal_str(e.price),
        "fee": decimal_str(e.fee.amount if e.fee is not None else _ZERO),
        "fee_currency": e.fee.currency if e.fee is not None and e.fee.currency else None,
        "inferred": False,
    }
    if e.is_maker is not None:
        payload["is_maker"] = e.is_maker
    if replaced:
        payload["replaces_inferred_qty"] = decimal_str(replaced)
    return payload


def _describe(report: ExchangeReport) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(report)
    data.pop("raw", None)
    return data


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
