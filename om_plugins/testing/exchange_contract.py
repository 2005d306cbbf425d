"""The exchange-adapter contract: what every :class:`~om_plugins.ExchangeAdapter` must do, as
a pytest suite an exchange plugin runs against its own adapter and a venue it controls (a
fake server, a sandbox, the in-process paper exchange).

Subclass :class:`ExchangeContract` in a module named ``test_*.py`` and provide the fixture
``exchange_subject``: a callable that opens a fresh :class:`ContractSubject` (an async
context manager), so each test starts on an empty account::

    from contextlib import asynccontextmanager

    import pytest

    from om_plugins import Category, ExchangeContext
    from om_plugins.testing.exchange_contract import (
        ContractSubject,
        ExchangeContract,
        ReportsCapture,
    )


    class TestMyExchange(ExchangeContract):
        @pytest.fixture(params=[Category.LINEAR, Category.SPOT])
        def exchange_subject(self, request):
            @asynccontextmanager
            async def open_subject():
                async with MyFakeVenue() as venue:
                    capture = ReportsCapture()
                    adapter = MyExchange(venue.url, ExchangeContext(capture.publish))
                    await adapter.start()
                    try:
                        yield ContractSubject(
                            adapter, MyVenueDriver(venue, capture), request.param, "BTCUSDT"
                        )
                    finally:
                        await adapter.close()

            return open_subject

The tests are synchronous functions that run each scenario in a fresh event loop
(``asyncio.run``), so no async test plugin is needed and the venue, the adapter and the
scenario always share one loop.

The venue driver (:class:`VenueDriver`) is the small part only the implementer can write: it
moves the market, fills a resting order, makes the next create's answer get lost, and hands
over the messages the venue's order stream produced. An exchange whose stream comes through
a WS-Gateway collects what the gateway publishes (:class:`GatewayCapture`); one that reports
through ``ExchangeContext.publish_reports`` (like the paper exchange) collects those
(:class:`ReportsCapture`). Either way the suite reads them back through the adapter's own
``decode_stream``, as the engine does.

What it checks: placing, looking an order up by client id, cancelling (and cancelling again),
listing open orders, a duplicate client id, a resting order the market crosses, executions of
fills, positions after fills, the
ambiguous create (a request whose answer is lost: found by lookup when it executed, absent
when it did not, never placed twice), the order stream decoded into neutral reports
(including several executions of one order and a stream gap), and garbage on the stream
refused with :class:`~om_plugins.InvalidReport`. Optional adapter methods
(``list_executions``, ``list_positions``) and driver abilities may raise
``NotImplementedError``: their tests are then skipped, never passed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn, Protocol, TypeVar

import pytest

from om_plugins.errors import (
    DuplicateClientOrderId,
    ExchangeRejected,
    OutcomeUnknown,
)
from om_plugins.exchange import ExchangeAdapter, GatewayContext, OrderRequest, PlacedOrder
from om_plugins.reports import (
    ExecutionReport,
    InvalidReport,
    OrderReport,
    Report,
    StreamGap,
    encode_reports,
)
from om_plugins.rounding import round_down, round_up
from om_plugins.types import (
    Category,
    Instrument,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

__all__ = [
    "ContractSubject",
    "ExchangeContract",
    "GatewayCapture",
    "ReportsCapture",
    "SubjectFactory",
    "VenueDriver",
]

T = TypeVar("T")

#: Statuses of an order that is still working.
_OPEN = frozenset(
    {
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.UNTRIGGERED,
        OrderStatus.TRIGGERED,
        OrderStatus.SUBMITTED,
    }
)
_CANCELLED = frozenset({OrderStatus.CANCELLED, OrderStatus.PARTIALLY_FILLED_CANCELLED})


class VenueDriver(Protocol):
    """What the tests need the venue to do; everything else goes through the adapter."""

    async def set_price(self, category: Category, symbol: str, price: Decimal) -> None:
        """Move the market price; resting orders it crosses fill."""

    async def fill(
        self, category: Category, symbol: str, client_order_id: str, qty: Decimal | None = None
    ) -> None:
        """Fill ``qty`` (default: all that is left) of a resting order at its limit price."""

    async def lose_next_create_answer(self, *, executed: bool) -> None:
        """The next create request reaches the venue, is placed (``executed``) or not, and
        its answer never arrives: the adapter must raise ``OutcomeUnknown``. Raise
        ``NotImplementedError`` if the venue cannot do that."""

    def create_requests(self, client_order_id: str) -> int:
        """How many create requests for ``client_order_id`` reached the venue."""

    async def stream_messages(self) -> list[bytes]:
        """Every order-stream message (a body of ``ws-gateway.order``) the venue produced
        since the last call, oldest first."""

    async def interrupt_stream(self) -> None:
        """Break the order stream and let it recover; a message the adapter decodes into a
        :class:`~om_plugins.StreamGap` must follow. A venue without a stream to break
        publishes the gap itself."""


@dataclass
class ContractSubject:
    """One adapter on a fresh account of a venue the driver controls."""

    adapter: ExchangeAdapter
    venue: VenueDriver
    #: The category and symbol the tests trade: a liquid, plain instrument.
    category: Category = Category.LINEAR
    symbol: str = "BTCUSDT"
    #: How long an asynchronous effect (a cancel, a fill reaching the stream) may take.
    timeout: float = 10.0


#: What the ``exchange_subject`` fixture returns.
SubjectFactory = Callable[[], AbstractAsyncContextManager[ContractSubject]]


@dataclass
class ReportsCapture:
    """Collects what an adapter publishes through ``ExchangeContext.publish_reports``, as
    the neutral stream messages the engine would receive."""

    messages: list[bytes] = field(default_factory=list)

    async def publish(self, reports: Sequence[Report]) -> None:
        self.messages.append(encode_reports(reports))

    def gap(self, reason: str = "stream interrupted") -> None:
        self.messages.append(encode_reports([StreamGap(reason=reason)]))

    async def drain(self) -> list[bytes]:
        taken, self.messages = self.messages, []
        return taken


@dataclass
class GatewayCapture:
    """Collects what a stream gateway publishes through its :class:`GatewayContext`."""

    messages: list[bytes] = field(default_factory=list)

    @property
    def context(self) -> GatewayContext:
        return GatewayContext(publish=self._publish)

    async def _publish(self, body: bytes, message_id: str, type: str) -> None:
        self.messages.append(body)

    async def drain(self) -> list[bytes]:
        taken, self.messages = self.messages, []
        return taken


# -- helpers -----------------------------------------------------------------------------------


def _client_id() -> str:
    return f"ct-{uuid.uuid4().hex[:24]}"


async def _eventually(check: Callable[[], Awaitable[T | None]], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class _Trade:
    """Valid order sizes and a resting price for the subject's instrument."""

    instrument: Instrument
    #: A buy limit price well below the market: it rests.
    resting_price: Decimal
    #: The smallest valid quantity; orders use two of them so half can fill.
    unit: Decimal

    @property
    def qty(self) -> Decimal:
        return self.unit * 2


async def _trade(subject: ContractSubject) -> _Trade:
    adapter = subject.adapter
    instrument = await adapter.get_instrument(subject.category, subject.symbol)
    reference = await adapter.get_reference_price(subject.category, subject.symbol)
    price = round_down(reference * Decimal("0.9"), instrument.tick_size)
    unit = max(instrument.min_qty, instrument.qty_step)
    if instrument.min_notional > 0:
        needed = instrument.qty_for_notional(instrument.min_notional * Decimal("1.2"), price)
        unit = max(unit, round_up(needed, instrument.qty_step))
    return _Trade(instrument, price, unit)


def _request(
    subject: ContractSubject,
    trade: _Trade,
    *,
    order_type: OrderType = OrderType.LIMIT,
    client_order_id: str | None = None,
) -> OrderRequest:
    limit = order_type is OrderType.LIMIT
    return OrderRequest(
        client_order_id=client_order_id or _client_id(),
        symbol=subject.symbol,
        category=subject.category,
        side=Side.BUY,
        order_type=order_type,
        qty=trade.qty,
        price=trade.resting_price if limit else None,
        time_in_force=TimeInForce.GTC if limit else None,
    )


async def _reports(subject: ContractSubject) -> list[Report]:
    """Decode every new stream message; each must decode, into neutral reports only."""
    reports: list[Report] = []
    for body in await subject.venue.stream_messages():
        decoded = subject.adapter.decode_stream(body)
        assert isinstance(decoded, list)
        for report in decoded:
            assert isinstance(report, OrderReport | ExecutionReport | StreamGap), report
        reports.extend(decoded)
    return reports


def _scenario(
    body: Callable[[Any, ContractSubject], Awaitable[None]],
) -> Callable[[Any, SubjectFactory], None]:
    """A synchronous test running ``body`` on a fresh subject in its own event loop."""

    def test(self: Any, exchange_subject: SubjectFactory) -> None:
        async def run() -> None:
            async with exchange_subject() as subject:
                await body(self, subject)

        asyncio.run(run())

    test.__name__ = body.__name__
    test.__qualname__ = body.__qualname__
    test.__doc__ = body.__doc__
    return test


def _not_implemented(what: str) -> NoReturn:
    pytest.skip(f"{what} is not implemented by this adapter or venue driver")


# -- the contract ------------------------------------------------------------------------------


class ExchangeContract:
    """The contract suite; subclass it as ``Test…`` and provide ``exchange_subject``."""

    @pytest.fixture
    def exchange_subject(self) -> SubjectFactory:
        raise NotImplementedError(
            "provide the exchange_subject fixture: a callable opening a ContractSubject"
        )

    @_scenario
    async def test_a_placed_order_is_found_by_its_client_id(self, s: ContractSubject) -> None:
        """place_order acknowledges the order; get_order finds it, open, as it was sent."""
        trade = await _trade(s)
        request = _request(s, trade)
        placed = await s.adapter.place_order(request)
        assert isinstance(placed, PlacedOrder)
        assert placed.client_order_id == request.client_order_id and placed.exchange_order_id
        found = await s.adapter.get_order(s.category, s.symbol, request.client_order_id)
        assert found is not None, "a placed order must be found by its client id"
        assert found.client_order_id == request.client_order_id
        assert found.exchange_order_id == placed.exchange_order_id
        assert (found.category, found.symbol, found.side) == (s.category, s.symbol, Side.BUY)
        assert found.status in _OPEN and found.filled_qty == 0
        assert found.qty == request.qty and found.price == request.price
        assert found.order_type is OrderType.LIMIT

    @_scenario
    async def test_an_order_is_found_by_its_exchange_id_too(self, s: ContractSubject) -> None:
        """Orders placed elsewhere may have no client id the exchange knows: get_order with
        an empty client id looks them up by the exchange's id."""
        trade = await _trade(s)
        request = _request(s, trade)
        placed = await s.adapter.place_order(request)
        found = await s.adapter.get_order(
            s.category, s.symbol, "", exchange_order_id=placed.exchange_order_id
        )
        assert found is not None, "a placed order must be found by its exchange id"
        assert found.exchange_order_id == placed.exchange_order_id
        assert found.client_order_id == request.client_order_id

    @_scenario
    async def test_an_unknown_client_id_is_none(self, s: ContractSubject) -> None:
        assert await s.adapter.get_order(s.category, s.symbol, _client_id()) is None

    @_scenario
    async def test_a_duplicate_client_id_is_never_placed_twice(self, s: ContractSubject) -> None:
        trade = await _trade(s)
        request = _request(s, trade)
        await s.adapter.place_order(request)
        with pytest.raises(DuplicateClientOrderId):
            await s.adapter.place_order(request)
        open_orders = await s.adapter.list_open_orders(s.category, s.symbol)
        assert [o.client_order_id for o in open_orders].count(request.client_order_id) == 1

    @_scenario
    async def test_cancel_ends_the_order_and_a_second_cancel_is_order_not_found(
        self, s: ContractSubject
    ) -> None:
        trade = await _trade(s)
        request = _request(s, trade)
        await s.adapter.place_order(request)
        await s.adapter.cancel_order(s.category, s.symbol, request.client_order_id)

        async def cancelled() -> OrderReport | None:
            found = await s.adapter.get_order(s.category, s.symbol, request.client_order_id)
            return found if found is not None and found.status in _CANCELLED else None

        report = await _eventually(cancelled, s.timeout, "the order to be cancelled")
        assert report.filled_qty == 0
        with pytest.raises(ExchangeRejected) as again:
            await s.adapter.cancel_order(s.category, s.symbol, request.client_order_id)
        assert again.value.reason_code == "ORDER_NOT_FOUND"

    @_scenario
    async def test_open_orders_are_listed_and_closed_ones_are_not(self, s: ContractSubject) -> None:
        trade = await _trade(s)
        first, second, gone = (_request(s, trade) for _ in range(3))
        for request in (first, second, gone):
            await s.adapter.place_order(request)
        await s.adapter.cancel_order(s.category, s.symbol, gone.client_order_id)
        wanted = {first.client_order_id, second.client_order_id}

        async def listed() -> list[OrderReport] | None:
            orders = await s.adapter.list_open_orders(s.category)
            ids = {o.client_order_id for o in orders}
            return orders if wanted <= ids and gone.client_order_id not in ids else None

        orders = await _eventually(listed, s.timeout, "the open orders")
        assert all(o.status in _OPEN for o in orders)
        by_symbol = await s.adapter.list_open_orders(s.category, s.symbol)
        assert wanted <= {o.client_order_id for o in by_symbol}
        assert all(o.symbol == s.symbol for o in by_symbol)

    @_scenario
    async def test_fills_are_listed_as_executions(self, s: ContractSubject) -> None:
        """Two fills of one order: two executions with their own ids, prices and fees; the
        order filled with their quantity."""
        trade = await _trade(s)
        request = _request(s, trade)
        placed = await s.adapter.place_order(request)
        await s.venue.fill(s.category, s.symbol, request.client_order_id, trade.unit)
        await s.venue.fill(s.category, s.symbol, request.client_order_id)

        async def executions() -> list[ExecutionReport] | None:
            try:
                found = await s.adapter.list_executions(
                    s.category, s.symbol, client_order_id=request.client_order_id
                )
            except NotImplementedError:
                _not_implemented("list_executions")
            return found if sum((e.qty for e in found), Decimal(0)) >= request.qty else None

        found = await _eventually(executions, s.timeout, "both executions")
        assert len({e.exec_id for e in found}) == len(found) == 2
        assert sum((e.qty for e in found), Decimal(0)) == request.qty
        for execution in found:
            assert execution.exchange_order_id == placed.exchange_order_id
            assert execution.client_order_id == request.client_order_id
            assert execution.side is Side.BUY and execution.price > 0
            assert execution.executed_at.tzinfo is not None
            assert execution.fee is None or execution.fee.currency
        order = await s.adapter.get_order(s.category, s.symbol, request.client_order_id)
        assert order is not None and order.status is OrderStatus.FILLED
        assert order.filled_qty == request.qty
        by_exchange_id = await s.adapter.list_executions(
            s.category, s.symbol, exchange_order_id=placed.exchange_order_id
        )
        assert {e.exec_id for e in by_exchange_id} == {e.exec_id for e in found}

    @_scenario
    async def test_a_price_crossing_a_resting_order_fills_it(self, s: ContractSubject) -> None:
        """The market moves through a resting buy: the order fills, never above its limit."""
        trade = await _trade(s)
        request = _request(s, trade)
        await s.adapter.place_order(request)
        below = round_down(trade.resting_price * Decimal("0.99"), trade.instrument.tick_size)
        await s.venue.set_price(s.category, s.symbol, below)

        async def filled() -> OrderReport | None:
            found = await s.adapter.get_order(s.category, s.symbol, request.client_order_id)
            return found if found is not None and found.status is OrderStatus.FILLED else None

        order = await _eventually(filled, s.timeout, "the crossed order to fill")
        assert order.filled_qty == request.qty
        assert order.avg_price is not None and order.avg_price <= trade.resting_price

    @_scenario
    async def test_positions_follow_fills(self, s: ContractSubject) -> None:
        """A market buy grows the position (spot: the coin balance, less fees paid in it)."""
        trade = await _trade(s)

        async def size() -> Decimal:
            try:
                positions = await s.adapter.list_positions(s.category)
            except NotImplementedError:
                _not_implemented("list_positions")
            assert all(p.size != 0 for p in positions), "flat positions are not listed"
            return sum((p.size for p in positions if p.symbol == s.symbol), Decimal(0))

        before = await size()
        request = _request(s, trade, order_type=OrderType.MARKET)
        await s.adapter.place_order(request)

        async def filled() -> OrderReport | None:
            found = await s.adapter.get_order(s.category, s.symbol, request.client_order_id)
            return found if found is not None and found.status is OrderStatus.FILLED else None

        order = await _eventually(filled, s.timeout, "the market order to fill")
        grown = order.filled_qty
        if s.category is Category.SPOT:
            base = trade.instrument.base_coin
            grown -= sum((f.amount for f in order.fees if f.currency == base), Decimal(0))

        async def moved() -> Decimal | None:
            now = await size()
            return now if now == before + grown else None

        await _eventually(moved, s.timeout, f"the {s.symbol} position to grow by {grown}")

    @_scenario
    async def test_a_create_whose_answer_is_lost_after_executing_is_found(
        self, s: ContractSubject
    ) -> None:
        trade = await _trade(s)
        try:
            await s.venue.lose_next_create_answer(executed=True)
        except NotImplementedError:
            _not_implemented("losing a create's answer")
        request = _request(s, trade)
        with pytest.raises(OutcomeUnknown):
            await s.adapter.place_order(request)

        async def found() -> OrderReport | None:
            return await s.adapter.get_order(s.category, s.symbol, request.client_order_id)

        report = await _eventually(found, s.timeout, "the executed order to be found")
        assert report.client_order_id == request.client_order_id
        assert s.venue.create_requests(request.client_order_id) == 1

    @_scenario
    async def test_a_create_whose_answer_is_lost_before_executing_is_absent(
        self, s: ContractSubject
    ) -> None:
        trade = await _trade(s)
        try:
            await s.venue.lose_next_create_answer(executed=False)
        except NotImplementedError:
            _not_implemented("losing a create's answer")
        request = _request(s, trade)
        with pytest.raises(OutcomeUnknown):
            await s.adapter.place_order(request)
        assert await s.adapter.get_order(s.category, s.symbol, request.client_order_id) is None
        assert s.venue.create_requests(request.client_order_id) <= 1

    @_scenario
    async def test_the_stream_tells_an_orders_life_in_neutral_reports(
        self, s: ContractSubject
    ) -> None:
        """Placed, filled in two parts: the stream's messages decode into order reports up to
        FILLED and executions for the whole quantity, each execution once."""
        await _reports(s)  # whatever came before
        trade = await _trade(s)
        request = _request(s, trade)
        await s.adapter.place_order(request)
        await s.venue.fill(s.category, s.symbol, request.client_order_id, trade.unit)
        await s.venue.fill(s.category, s.symbol, request.client_order_id)
        seen: list[Report] = []

        async def complete() -> list[OrderReport | ExecutionReport] | None:
            seen.extend(await _reports(s))
            mine: list[OrderReport | ExecutionReport] = [
                r
                for r in seen
                if isinstance(r, OrderReport | ExecutionReport)
                and r.client_order_id == request.client_order_id
            ]
            filled = any(
                isinstance(r, OrderReport) and r.status is OrderStatus.FILLED for r in mine
            )
            executed = sum((r.qty for r in mine if isinstance(r, ExecutionReport)), Decimal(0))
            return mine if filled and executed >= request.qty else None

        mine = await _eventually(complete, s.timeout, "the order's life on the stream")
        executions = [r for r in mine if isinstance(r, ExecutionReport)]
        assert len({e.exec_id for e in executions}) == len(executions) == 2
        assert sum((e.qty for e in executions), Decimal(0)) == request.qty
        orders = [r for r in mine if isinstance(r, OrderReport)]
        assert all((o.category, o.symbol) == (s.category, s.symbol) for o in orders)
        last = orders[-1]
        assert last.status is OrderStatus.FILLED and last.filled_qty == request.qty

    @_scenario
    async def test_a_stream_interruption_is_reported_as_a_gap(self, s: ContractSubject) -> None:
        await _reports(s)
        await s.venue.interrupt_stream()

        async def gap() -> StreamGap | None:
            for report in await _reports(s):
                if isinstance(report, StreamGap):
                    return report
            return None

        await _eventually(gap, s.timeout, "a StreamGap after the interruption")

    @_scenario
    async def test_garbage_on_the_stream_is_an_invalid_report(self, s: ContractSubject) -> None:
        for body in (b"", b"not json", b"\xff\xfe", b"[]", b"{}", b'{"reports": 5}'):
            with pytest.raises(InvalidReport):
                s.adapter.decode_stream(body)
