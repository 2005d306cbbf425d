"""The Bybit V5 exchange adapter (``OM_EXCHANGE=bybit``), on pybit's REST client.

Beyond the :class:`~om_plugins.ExchangeAdapter` interface it offers, for reconciliation and
monitoring (not part of the SDK contract, so only code that knows it talks to Bybit should
use them):

* :meth:`BybitExchange.order_history` — ``/v5/order/history`` as ``ExchangeOrder``s;
* :meth:`BybitExchange.executions` — ``/v5/execution/list`` as :class:`Execution`s;
* :meth:`BybitExchange.positions` — ``/v5/position/list`` as :class:`ExchangePosition`s;
* :meth:`BybitExchange.wallet_balance` — ``/v5/account/wallet-balance`` as ``Balance``s;
* :meth:`BybitExchange.instruments` — ``/v5/market/instruments-info`` as ``Instrument``s;
* :meth:`BybitExchange.tickers` — ``/v5/market/tickers`` as :class:`Ticker`s;
* :meth:`BybitExchange.forget_instrument` — drop cached rules;
* :meth:`BybitExchange.rate_limit_headroom` — requests each endpoint group could send now.

Lists that come in pages are read to the end (cursor pagination); a list that does not end
within ``MAX_PAGES`` pages raises :class:`ExchangeUnavailable` rather than returning part of
it, since reconciliation would take a missing order for a vanished one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from om_plugins import (
    Balance,
    Category,
    DuplicateClientOrderId,
    ExchangeAdapter,
    ExchangeContext,
    OrderReport as ExchangeOrder,
    ExchangeRejected,
    ExchangeUnavailable,
    Instrument,
    OrderRequest,
    OutcomeUnknown,
    PlacedOrder,
)
from plugins_builtin.bybit.client import BybitClient, Reply
from plugins_builtin.bybit.convert import (
    ExchangePosition,
    Execution,
    Ticker,
    balance_from,
    create_params,
    execution_from,
    instrument_from,
    order_from,
    order_from_executions,
    position_from,
    ticker_from,
)
from plugins_builtin.bybit.errors import (
    ORDER_NOT_FOUND_CODES,
    PRECISION_CODES,
    Operation,
    ResponseError,
)
from plugins_builtin.bybit.ratelimit import RateLimiter
from plugins_builtin.bybit.settings import BybitEnv, BybitSettings

__all__ = ["MAX_PAGES", "BybitExchange", "Group", "rate_limits"]

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PAGES = 100
#: Statuses of orders that can still trade (Bybit ``orderStatus``).
OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})


class Group:
    """Rate-limit groups: Bybit limits each endpoint separately, per UID."""

    CREATE_LINEAR = "create.linear"  # linear and inverse share the limit
    CREATE_SPOT = "create.spot"
    CANCEL_LINEAR = "cancel.linear"
    CANCEL_SPOT = "cancel.spot"
    ORDER_REALTIME = "order.realtime"
    ORDER_HISTORY = "order.history"
    EXECUTIONS = "execution.list"
    POSITIONS = "position.list"
    WALLET = "account.wallet-balance"
    #: Public market data; limited per IP (600 per 5 s), not per UID.
    MARKET = "market"


def rate_limits(settings: BybitSettings) -> dict[str, int]:
    reads = settings.rate_limit_reads
    return {
        Group.CREATE_LINEAR: settings.rate_limit_create_linear,
        Group.CREATE_SPOT: settings.rate_limit_create_spot,
        Group.CANCEL_LINEAR: settings.rate_limit_cancel_linear,
        Group.CANCEL_SPOT: settings.rate_limit_cancel_spot,
        Group.ORDER_REALTIME: reads,
        Group.ORDER_HISTORY: reads,
        Group.EXECUTIONS: reads,
        Group.POSITIONS: reads,
        Group.WALLET: reads,
        Group.MARKET: reads,
    }


def _code(exc: ExchangeRejected) -> int | None:
    try:
        return int(exc.code)
    except ValueError:
        return None


class BybitExchange(ExchangeAdapter):
    """One Bybit account (unified trading account), over REST."""

    name = "bybit"

    def __init__(self, settings: BybitSettings, context: ExchangeContext | None = None) -> None:
        self.settings = settings
        credentials = settings.credentials()  # a clear error when the keys are missing
        self.account = settings.account_label
        #: Bybit accepts a request until ``recv_window`` after its timestamp; 5 s for skew.
        self.resend_guard_seconds = settings.recv_window_ms / 1000 + 5
        self.limiter = RateLimiter(rate_limits(settings))
        self.client = BybitClient(settings, credentials, self.limiter)
        self._context = context
        self._instruments: dict[tuple[Category, str], tuple[float, Instrument]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.env is BybitEnv.MAINNET:
            log.warning(
                "bybit account %r: trading on MAINNET with real money (%s)",
                self.account,
                self.client.base_url,
            )
        else:
            log.info(
                "bybit account %r: %s environment at %s",
                self.account,
                self.settings.env.value,
                self.client.base_url,
            )

    async def close(self) -> None:
        await self.client.close()

    def rate_limit_headroom(self) -> dict[str, float]:
        """Requests each endpoint group could send right now without waiting."""
        return self.limiter.headroom()

    # -- orders --------------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> PlacedOrder:
        spot = request.category is Category.SPOT
        try:
            reply = await self.client.call(
                "place_order",
                create_params(request),
                group=Group.CREATE_SPOT if spot else Group.CREATE_LINEAR,
                operation=Operation.CREATE,
                what=f"create {request.client_order_id}",
            )
        except DuplicateClientOrderId:
            log.info("bybit: order %s already exists", request.client_order_id)
            raise
        except ExchangeRejected as exc:
            if _code(exc) in PRECISION_CODES:
                # The rules we rounded with may be outdated; fetch them again next time.
                self.forget_instrument(request.category, request.symbol)
            log.warning(
                "bybit: order %s rejected: %s (%s)", request.client_order_id, exc.message, exc.code
            )
            raise
        try:
            result = reply.result
            order_id = str(result["orderId"])
        except (ResponseError, KeyError) as exc:
            # Bybit answered OK, so the order most likely exists; let the engine look it up.
            raise OutcomeUnknown(
                f"create {request.client_order_id}: unreadable acknowledgement ({exc})"
            ) from None
        echoed = result.get("orderLinkId")
        if echoed and echoed != request.client_order_id:
            raise OutcomeUnknown(
                f"create {request.client_order_id}: acknowledged as {echoed!r}, another order"
            )
        log.info(
            "bybit: placed %s %s %s %s %s → %s",
            request.client_order_id,
            request.category.value,
            request.symbol,
            request.side.value,
            request.qty,
            order_id,
        )
        return PlacedOrder(exchange_order_id=order_id, client_order_id=request.client_order_id)

    async def get_order(
        self, category: Category, symbol: str, client_order_id: str
    ) -> ExchangeOrder | None:
        """Open and recent orders first, then the history, then the trades: a filled order
        can drop out of ``/v5/order/realtime`` (and cancelled ones out of the history after
        24 h). ``None`` only when all three say they know no such order."""
        query = {"category": category.value, "symbol": symbol, "orderLinkId": client_order_id}
        for method, group, what in (
            ("get_open_orders", Group.ORDER_REALTIME, "GET /v5/order/realtime"),
            ("get_order_history", Group.ORDER_HISTORY, "GET /v5/order/history"),
        ):
            reply = await self._read(method, query, group=group, what=what)
            for item in self._items(reply, what):
                if item.get("orderLinkId") == client_order_id:
                    return self._convert(order_from, item, category, what)
        executions = await self.executions(category, symbol, order_link_id=client_order_id)
        mine = [e for e in executions if e.client_order_id == client_order_id]
        if mine:
            return order_from_executions(mine)
        return None

    async def cancel_order(self, category: Category, symbol: str, client_order_id: str) -> None:
        try:
            await self.client.call(
                "cancel_order",
                {"category": category.value, "symbol": symbol, "orderLinkId": client_order_id},
                group=Group.CANCEL_SPOT if category is Category.SPOT else Group.CANCEL_LINEAR,
                operation=Operation.CHANGE,
                what=f"cancel {client_order_id}",
            )
        except ExchangeRejected as exc:
            if _code(exc) in ORDER_NOT_FOUND_CODES:
                log.info("bybit: %s is not open (%s: %s)", client_order_id, exc.code, exc.message)
            raise

    async def list_open_orders(
        self, category: Category, symbol: str | None = None
    ) -> list[ExchangeOrder]:
        what = "GET /v5/order/realtime"
        found: dict[str, ExchangeOrder] = {}
        for scope in self._scopes(category, symbol):
            items = await self._pages(
                "get_open_orders",
                {"category": category.value, **scope, "limit": 50},
                group=Group.ORDER_REALTIME,
                what=what,
            )
            for item in items:
                order = self._convert(order_from, item, category, what)
                if order.status in OPEN_STATUSES:
                    found.setdefault(order.exchange_order_id, order)
        return list(found.values())

    async def order_history(
        self,
        category: Category,
        symbol: str | None = None,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> list[ExchangeOrder]:
        """Closed and recent orders (Bybit keeps cancelled ones 24 h, filled ones longer);
        Bybit allows at most 7 days between ``start_time`` and ``end_time``."""
        what = "GET /v5/order/history"
        params = {"category": category.value, "symbol": symbol, "limit": 50}
        items = await self._pages(
            "get_order_history",
            _with_times(params, start_time, end_time),
            group=Group.ORDER_HISTORY,
            what=what,
        )
        return [self._convert(order_from, item, category, what) for item in items]

    async def executions(
        self,
        category: Category,
        symbol: str | None = None,
        *,
        order_link_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> list[Execution]:
        """Trades, newest first as Bybit lists them; ``exec_id`` identifies each."""
        what = "GET /v5/execution/list"
        params = {
            "category": category.value,
            "symbol": symbol,
            "orderLinkId": order_link_id,
            "limit": 100,
        }
        items = await self._pages(
            "get_executions",
            _with_times(params, start_time, end_time),
            group=Group.EXECUTIONS,
            what=what,
        )
        return [self._convert(execution_from, item, category, what) for item in items]

    # -- account -------------------------------------------------------------------------------

    async def positions(
        self, category: Category, symbol: str | None = None
    ) -> list[ExchangePosition]:
        """Positions as Bybit lists them, flat ones included."""
        what = "GET /v5/position/list"
        result: list[ExchangePosition] = []
        for scope in self._scopes(category, symbol):
            items = await self._pages(
                "get_positions",
                {"category": category.value, **scope, "limit": 200},
                group=Group.POSITIONS,
                what=what,
            )
            result.extend(self._convert(position_from, item, category, what) for item in items)
        return result

    async def wallet_balance(
        self, coins: Sequence[str] | None = None, *, account_type: str = "UNIFIED"
    ) -> list[Balance]:
        what = "GET /v5/account/wallet-balance"
        params: dict[str, Any] = {"accountType": account_type}
        if coins:
            params["coin"] = ",".join(coins)
        reply = await self._read("get_wallet_balance", params, group=Group.WALLET, what=what)
        balances = []
        for account in self._items(reply, what):
            for coin in account.get("coin") or []:
                balances.append(self._convert(balance_from, coin, None, what))
        return balances

    async def get_balance(self, coin: str) -> Balance:
        for balance in await self.wallet_balance([coin]):
            if balance.coin == coin:
                return balance
        return Balance(coin=coin, available=Decimal(0), equity=Decimal(0))

    # -- market --------------------------------------------------------------------------------

    async def instruments(self, category: Category, symbol: str | None = None) -> list[Instrument]:
        """Trading rules of every instrument (or one), whatever its status; refreshes the
        cache ``get_instrument`` uses."""
        return [inst for inst, _ in await self._instrument_items(category, symbol)]

    async def _instrument_items(
        self, category: Category, symbol: str | None
    ) -> list[tuple[Instrument, str]]:
        what = "GET /v5/market/instruments-info"
        params: dict[str, Any] = {"category": category.value, "symbol": symbol}
        if category is not Category.SPOT:
            params["limit"] = 1000  # spot has no pagination
        items = await self._pages("get_instruments_info", params, group=Group.MARKET, what=what)
        result = []
        now = time.monotonic()
        for item in items:
            instrument = self._convert(instrument_from, item, category, what)
            status = str(item.get("status") or "")
            if status == "Trading":
                self._instruments[(category, instrument.symbol)] = (now, instrument)
            result.append((instrument, status))
        return result

    async def get_instrument(self, category: Category, symbol: str) -> Instrument:
        cached = self._instruments.get((category, symbol))
        if (
            cached is not None
            and time.monotonic() - cached[0] < self.settings.instrument_cache_ttl_s
        ):
            return cached[1]
        for instrument, status in await self._instrument_items(category, symbol):
            if instrument.symbol != symbol:
                continue
            if status != "Trading":
                raise ExchangeRejected(
                    f"{category.value} {symbol} is not trading (status {status!r})",
                    code="SYMBOL_NOT_TRADING",
                )
            return instrument
        raise ExchangeRejected(
            f"Bybit lists no {category.value} instrument {symbol}", code="SYMBOL_NOT_FOUND"
        )

    def forget_instrument(self, category: Category, symbol: str) -> None:
        self._instruments.pop((category, symbol), None)

    async def tickers(self, category: Category, symbol: str | None = None) -> list[Ticker]:
        what = "GET /v5/market/tickers"
        reply = await self._read(
            "get_tickers",
            {"category": category.value, "symbol": symbol},
            group=Group.MARKET,
            what=what,
        )
        return [
            self._convert(ticker_from, item, category, what) for item in self._items(reply, what)
        ]

    async def get_reference_price(self, category: Category, symbol: str) -> Decimal:
        for ticker in await self.tickers(category, symbol):
            if ticker.symbol != symbol:
                continue
            price = ticker.reference_price
            if price is None:
                raise ExchangeUnavailable(f"{category.value} {symbol}: the ticker has no price")
            return price
        raise ExchangeRejected(
            f"Bybit has no {category.value} ticker {symbol}", code="SYMBOL_NOT_FOUND"
        )

    # -- plumbing ------------------------------------------------------------------------------

    def _scopes(self, category: Category, symbol: str | None) -> list[dict[str, str]]:
        """Linear lists need a symbol or a settle coin; ask once per configured coin."""
        if symbol is not None:
            return [{"symbol": symbol}]
        if category is Category.LINEAR:
            return [{"settleCoin": coin} for coin in self.settings.linear_settle_coins]
        return [{}]

    async def _read(
        self, method: str, params: Mapping[str, Any], *, group: str, what: str
    ) -> Reply:
        query = {k: v for k, v in params.items() if v is not None}
        return await self.client.call(
            method, query, group=group, operation=Operation.READ, what=what
        )

    async def _pages(
        self, method: str, params: Mapping[str, Any], *, group: str, what: str
    ) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        cursor = ""
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            reply = await self._read(method, query, group=group, what=what)
            items.extend(self._items(reply, what))
            cursor = self._cursor(reply, what)
            if not cursor:
                return items
            if cursor in seen:
                raise ExchangeUnavailable(f"{what}: the cursor {cursor!r} came back twice")
            seen.add(cursor)
        raise ExchangeUnavailable(f"{what}: more than {MAX_PAGES} pages; refusing a partial list")

    @staticmethod
    def _items(reply: Reply, what: str) -> list[Mapping[str, Any]]:
        try:
            return reply.items()
        except ResponseError as exc:
            raise ExchangeUnavailable(f"{what}: unreadable response ({exc})") from None

    @staticmethod
    def _cursor(reply: Reply, what: str) -> str:
        try:
            return reply.cursor
        except ResponseError as exc:
            raise ExchangeUnavailable(f"{what}: unreadable response ({exc})") from None

    @staticmethod
    def _convert(
        convert: Callable[..., T], item: Mapping[str, Any], category: Category | None, what: str
    ) -> T:
        try:
            return convert(item, category) if category is not None else convert(item)
        except (ResponseError, KeyError, TypeError, ValueError) as exc:
            raise ExchangeUnavailable(f"{what}: unreadable item ({exc}): {dict(item)}") from None


def _with_times(
    params: Mapping[str, Any], start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    query = dict(params)
    if start is not None:
        query["startTime"] = int(start.timestamp() * 1000)
    if end is not None:
        query["endTime"] = int(end.timestamp() * 1000)
    return query
