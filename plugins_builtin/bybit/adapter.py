"""The Bybit V5 exchange adapter (``OM_EXCHANGE=bybit``), on pybit's REST client.

It trades the categories of ``OM_BYBIT_CATEGORIES`` (linear, inverse and spot by default) on
one unified account, in one-way or hedge mode, and answers in the SDK's neutral reports:
the stream (:meth:`BybitExchange.decode_stream`) and every REST lookup go through
:mod:`plugins_builtin.bybit.decode`.

Beyond the :class:`~om_plugins.ExchangeAdapter` contract it offers, for monitoring and for
code that knows it talks to Bybit:

* :attr:`BybitExchange.ban_state` / :attr:`~BybitExchange.ban_until` /
  :attr:`~BybitExchange.ban_reason` — the HTTP 403/429 ban in force, if any;
* :meth:`BybitExchange.rate_limit_headroom` — requests each endpoint group could send now;
* :meth:`BybitExchange.order_history` — ``/v5/order/history`` as ``OrderReport``s;
* :meth:`BybitExchange.wallet_balance` — ``/v5/account/wallet-balance`` as ``Balance``s;
* :meth:`BybitExchange.instruments` / :meth:`~BybitExchange.tickers` — market data;
* :meth:`BybitExchange.forget_instrument` — drop cached rules.

Lists that come in pages are read to the end (cursor pagination); a list that does not end
within ``MAX_PAGES`` pages raises :class:`ExchangeUnavailable` rather than returning part of
it, since reconciliation would take a missing order for a vanished one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from om_plugins import (
    Balance,
    Category,
    DuplicateClientOrderId,
    ExchangeAdapter,
    ExchangeContext,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    ExecutionReport,
    FeeRates,
    Instrument,
    InvalidReport,
    OrderReport,
    OrderRequest,
    OrderStatus,
    OutcomeUnknown,
    PlacedOrder,
    PositionMode,
    PositionReport,
    ReasonCode,
    Report,
)
from plugins_builtin.bybit.ban import BanGuard, BanState
from plugins_builtin.bybit.client import BybitClient, Reply
from plugins_builtin.bybit.convert import (
    Ticker,
    balance_from,
    create_params,
    dec,
    fee_rates_from,
    instrument_from,
    ticker_from,
    wallet_balance_from,
)
from plugins_builtin.bybit.decode import (
    Coins,
    decode_message,
    execution_report,
    order_from_executions,
    order_report,
    position_report,
)
from plugins_builtin.bybit.errors import (
    ORDER_NOT_FOUND_CODES,
    PRECISION_CODES,
    Operation,
    ResponseError,
)
from plugins_builtin.bybit.ratelimit import RateLimiter
from plugins_builtin.bybit.settings import BybitEnv, BybitSettings, PositionModeSetting

__all__ = ["MAX_PAGES", "OPEN_STATUSES", "BybitExchange", "Group", "rate_limits"]

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PAGES = 100
#: Orders that can still trade.
OPEN_STATUSES = frozenset(
    {
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.UNTRIGGERED,
        OrderStatus.TRIGGERED,
    }
)
#: Bybit counts requests in a rolling second by arrival; a spent token comes back a little
#: later than that, so jitter between sending and arriving never makes 11 out of 10.
RATE_WINDOW = 1.1
#: Bybit's widest time window for history and execution queries.
_WINDOW = timedelta(days=7) - timedelta(milliseconds=1)


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
    FEE_RATE = "account.fee-rate"
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
        Group.FEE_RATE: reads,
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
        self.categories = tuple(settings.categories)
        #: Bybit accepts a request until ``recv_window`` after its timestamp; 5 s for skew.
        self.resend_guard_seconds = settings.recv_window_ms / 1000 + 5
        self.limiter = RateLimiter(rate_limits(settings), window=RATE_WINDOW)
        #: HTTP 403/429 bans; ``ban.clock`` may be replaced in tests.
        self.ban = BanGuard(initial=settings.ban_initial_s, maximum=settings.ban_max_s)
        self.client = BybitClient(settings, credentials, self.limiter, self.ban)
        self._context = context
        self._instruments: dict[tuple[Category, str], tuple[float, Instrument]] = {}
        #: Coins of every instrument seen (any status), for fee currencies Bybit leaves out.
        self._coins: dict[tuple[Category, str], Coins] = {}
        self._modes: dict[tuple[Category, str], PositionMode] = {}
        self._fee_rates: dict[tuple[Category, str], tuple[float, FeeRates | None]] = {}
        self._leverage: dict[tuple[Category, str], tuple[float, Decimal | None]] = {}
        self._spot_symbols: tuple[float, frozenset[str]] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        categories = ", ".join(c.value for c in self.categories)
        if self.settings.env is BybitEnv.MAINNET:
            log.warning(
                "bybit account %r: trading on MAINNET with real money (%s); categories %s",
                self.account,
                self.client.base_url,
                categories,
            )
        else:
            log.info(
                "bybit account %r: %s environment at %s; categories %s",
                self.account,
                self.settings.env.value,
                self.client.base_url,
                categories,
            )

    async def close(self) -> None:
        await self.client.close()

    # -- monitoring ----------------------------------------------------------------------------

    def rate_limit_headroom(self) -> dict[str, float]:
        """Requests each endpoint group could send right now without waiting."""
        return self.limiter.headroom()

    @property
    def ban_state(self) -> BanState | None:
        """The HTTP 403/429 ban in force (nothing is sent until it ends), or ``None``."""
        return self.ban.state()

    @property
    def ban_until(self) -> datetime | None:
        """When the ban in force ends (UTC), or ``None``."""
        state = self.ban.state()
        return state.until if state is not None else None

    @property
    def ban_reason(self) -> str:
        """``IP_BANNED`` (HTTP 403) or ``RATE_LIMITED`` (HTTP 429) during a ban, else ``""``."""
        state = self.ban.state()
        return state.reason_code.value if state is not None else ""

    # -- the order stream ----------------------------------------------------------------------

    def decode_stream(self, body: bytes) -> list[Report]:
        """The reports in one ``ws-gateway.order`` message (see :mod:`.decode`)."""
        return decode_message(body, resolve=self._known_coins)

    def _known_coins(self, category: Category, symbol: str) -> Coins | None:
        return self._coins.get((category, symbol))

    # -- orders --------------------------------------------------------------------------------

    def _require_category(self, category: Category) -> None:
        """Trading (and the rules and prices trading needs) only in enabled categories;
        lookups, cancels and lists work in any, so nothing placed earlier is stranded."""
        if category not in self.categories:
            enabled = ",".join(c.value for c in self.categories)
            raise ExchangeRejected(
                f"bybit: category {category.value} is not enabled for account "
                f"{self.account!r} (OM_BYBIT_CATEGORIES={enabled})",
                code="CATEGORY_DISABLED",
                reason_code=ReasonCode.EXCHANGE_REJECTED.value,
            )

    async def place_order(self, request: OrderRequest) -> PlacedOrder:
        self._require_category(request.category)
        spot = request.category is Category.SPOT
        if request.position_idx not in (0, 1, 2) or (spot and request.position_idx != 0):
            raise ExchangeRejected(
                f"create {request.client_order_id}: position_idx {request.position_idx} is "
                f"invalid for {request.category.value} (0 one-way, 1/2 hedge sides; spot 0)",
                code="INVALID_POSITION_IDX",
                reason_code=ReasonCode.POSITION_MODE.value,
            )
        try:
            params = create_params(request)
        except ValueError as exc:
            raise ExchangeRejected(
                f"create {request.client_order_id}: {exc}",
                code="INVALID_REQUEST",
                reason_code=ReasonCode.INVALID_PRICE.value,
            ) from None
        try:
            reply = await self.client.call(
                "place_order",
                params,
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
            if exc.reason_code == ReasonCode.POSITION_MODE:
                # The account's mode was switched since we read it; read it again next time.
                self._modes.pop((request.category, request.symbol), None)
            log.warning(
                "bybit: order %s rejected: %s (%s, %s)",
                request.client_order_id,
                exc.message,
                exc.code,
                exc.reason_code,
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
            "bybit: placed %s %s %s %s %s (positionIdx %d) → %s",
            request.client_order_id,
            request.category.value,
            request.symbol,
            request.side.value,
            request.qty,
            request.position_idx,
            order_id,
        )
        return PlacedOrder(exchange_order_id=order_id, client_order_id=request.client_order_id)

    async def get_order(
        self,
        category: Category,
        symbol: str,
        client_order_id: str,
        *,
        exchange_order_id: str = "",
    ) -> OrderReport | None:
        """Open and recent orders first, then the history, then the executions: a filled
        order can drop out of ``/v5/order/realtime`` (and cancelled ones out of the history
        after 24 h). ``None`` only when all three say they know no such order.

        By ``orderLinkId``; by ``orderId`` when no client id is given (orders placed by
        hand have none)."""
        await self._learn_coins(category, symbol)
        if client_order_id:
            key, wanted = "orderLinkId", client_order_id
        elif exchange_order_id:
            key, wanted = "orderId", exchange_order_id
        else:
            raise ValueError("get_order needs a client order id or an exchange order id")
        query = {"category": category.value, "symbol": symbol, key: wanted}
        for method, group, what in (
            ("get_open_orders", Group.ORDER_REALTIME, "GET /v5/order/realtime"),
            ("get_order_history", Group.ORDER_HISTORY, "GET /v5/order/history"),
        ):
            reply = await self._read(method, query, group=group, what=what)
            for item in self._items(reply, what):
                if item.get(key) == wanted:
                    return self._convert(self._order, item, category, what)
        executions = await self.list_executions(
            category, symbol, client_order_id=client_order_id, exchange_order_id=exchange_order_id
        )
        if executions and any(e.kind.moves_position for e in executions):
            return order_from_executions(executions)
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
    ) -> list[OrderReport]:
        what = "GET /v5/order/realtime"
        found: dict[str, OrderReport] = {}
        for scope in self._scopes(category, symbol):
            items = await self._pages(
                "get_open_orders",
                {"category": category.value, **scope, "limit": 50},
                group=Group.ORDER_REALTIME,
                what=what,
            )
            for item in items:
                order = self._convert(self._order, item, category, what)
                if order.status in OPEN_STATUSES:
                    found.setdefault(order.exchange_order_id or order.client_order_id, order)
        return list(found.values())

    async def order_history(
        self,
        category: Category,
        symbol: str | None = None,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> list[OrderReport]:
        """Closed and recent orders (Bybit keeps cancelled ones without fills 24 h, others
        longer); Bybit allows at most 7 days between ``start_time`` and ``end_time``."""
        what = "GET /v5/order/history"
        params = {"category": category.value, "symbol": symbol, "limit": 50}
        items = await self._pages(
            "get_order_history",
            _with_times(params, start_time, end_time),
            group=Group.ORDER_HISTORY,
            what=what,
        )
        return [self._convert(self._order, item, category, what) for item in items]

    async def list_executions(
        self,
        category: Category,
        symbol: str,
        *,
        client_order_id: str = "",
        exchange_order_id: str = "",
        since: datetime | None = None,
    ) -> list[ExecutionReport]:
        """Executions (newest first, as Bybit lists them) of one order, or of ``symbol``
        when no id is given; Bybit keeps a 7-day window starting at ``since`` (default: the
        last 7 days)."""
        await self._learn_coins(category, symbol)
        what = "GET /v5/execution/list"
        params: dict[str, Any] = {"category": category.value, "symbol": symbol, "limit": 100}
        # Bybit reads orderId before orderLinkId; either names the order.
        if exchange_order_id:
            params["orderId"] = exchange_order_id
        elif client_order_id:
            params["orderLinkId"] = client_order_id
        end = since + _WINDOW if since is not None else None
        items = await self._pages(
            "get_executions",
            _with_times(params, since, end),
            group=Group.EXECUTIONS,
            what=what,
        )
        executions = [self._convert(self._execution, item, category, what) for item in items]
        return [
            e
            for e in executions
            if (not exchange_order_id or e.exchange_order_id == exchange_order_id)
            and (not client_order_id or e.client_order_id == client_order_id)
        ]

    def _order(self, item: Mapping[str, Any], category: Category) -> OrderReport:
        return order_report(item, category, resolve=self._known_coins)

    def _execution(self, item: Mapping[str, Any], category: Category) -> ExecutionReport:
        return execution_report(item, category, resolve=self._known_coins)

    # -- positions and account -------------------------------------------------------------------

    async def list_positions(self, category: Category) -> list[PositionReport]:
        """Every non-flat position: both sides in hedge mode; spot: coin balances (see
        :meth:`_spot_positions`)."""
        if category is Category.SPOT:
            return await self._spot_positions()
        what = "GET /v5/position/list"
        result: list[PositionReport] = []
        for scope in self._scopes(category, None):
            for item in await self._position_pages(category, scope):
                report = self._convert(position_report, item, category, what)
                if report is not None:
                    result.append(report)
        return result

    async def _position_pages(
        self, category: Category, scope: Mapping[str, str]
    ) -> list[Mapping[str, Any]]:
        return await self._pages(
            "get_positions",
            {"category": category.value, **scope, "limit": 200},
            group=Group.POSITIONS,
            what="GET /v5/position/list",
        )

    async def _spot_positions(self) -> list[PositionReport]:
        """Spot holds coins, not positions: each coin held (``walletBalance``) is the
        position of its ``<COIN><spot_quote_coin>`` pair, without an entry price. Coins are
        those of ``spot_coins``, or every coin held whose pair Bybit lists as trading; the
        quote coin itself is never a position."""
        quote = self.settings.spot_quote_coin
        wanted = set(self.settings.spot_coins)
        listed = await self._listed_spot_symbols()
        what = "GET /v5/account/wallet-balance"
        reports: list[PositionReport] = []
        for item in await self._wallet_coins(sorted(wanted) if wanted else None):
            coin = str(item.get("coin") or "")
            if not coin or coin == quote or (wanted and coin not in wanted):
                continue
            size = self._convert(lambda i, _c: wallet_balance_from(i), item, Category.SPOT, what)
            symbol = f"{coin}{quote}"
            if size == 0:
                continue
            if symbol not in listed:
                if wanted:
                    log.warning("bybit: no spot pair %s trades the balance of %s", symbol, coin)
                continue
            reports.append(
                PositionReport(category=Category.SPOT, symbol=symbol, size=size, raw=dict(item))
            )
        return reports

    async def _listed_spot_symbols(self) -> frozenset[str]:
        cached = self._spot_symbols
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.settings.instrument_cache_ttl_s:
            return cached[1]
        symbols = frozenset(
            inst.symbol
            for inst, status in await self._instrument_items(Category.SPOT, None)
            if status == "Trading"
        )
        self._spot_symbols = (now, symbols)
        return symbols

    async def get_position_mode(self, category: Category, symbol: str) -> PositionMode:
        """``OM_BYBIT_POSITION_MODE``, or (``auto``) what ``/v5/position/list`` shows for
        the symbol: two sides (``positionIdx`` 1 and 2) in hedge mode. Cached per symbol;
        a position-mode rejection drops the cached answer."""
        if category is Category.SPOT:
            return PositionMode.ONE_WAY
        setting = self.settings.position_mode
        if setting is PositionModeSetting.ONE_WAY:
            return PositionMode.ONE_WAY
        if setting is PositionModeSetting.HEDGE:
            return PositionMode.HEDGE
        key = (category, symbol)
        cached = self._modes.get(key)
        if cached is not None:
            return cached
        items = await self._position_pages(category, {"symbol": symbol})
        sides = {self._convert(_position_idx, item, category, "position mode") for item in items}
        if not items:
            return PositionMode.ONE_WAY  # nothing to tell; asked again next time
        mode = PositionMode.HEDGE if sides & {1, 2} else PositionMode.ONE_WAY
        self._modes[key] = mode
        log.info("bybit: %s %s is in %s mode", category.value, symbol, mode.value)
        return mode

    async def get_leverage(self, category: Category, symbol: str) -> Decimal | None:
        """The leverage ``/v5/position/list`` shows for the symbol (cached briefly); ``None``
        for spot."""
        if category is Category.SPOT:
            return None
        key = (category, symbol)
        cached = self._leverage.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.settings.leverage_cache_ttl_s:
            return cached[1]
        leverage: Decimal | None = None
        for item in await self._position_pages(category, {"symbol": symbol}):
            value = self._convert(_leverage, item, category, "GET /v5/position/list")
            if value is not None:
                leverage = value if leverage is None else max(leverage, value)
        self._leverage[key] = (now, leverage)
        return leverage

    async def get_fee_rates(self, category: Category, symbol: str) -> FeeRates | None:
        """The account's rates from ``/v5/account/fee-rate`` (cached); a negative maker
        rate is a rebate."""
        key = (category, symbol)
        cached = self._fee_rates.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.settings.fee_rate_cache_ttl_s:
            return cached[1]
        what = "GET /v5/account/fee-rate"
        reply = await self._read(
            "get_fee_rates",
            {"category": category.value, "symbol": symbol},
            group=Group.FEE_RATE,
            what=what,
        )
        rates: FeeRates | None = None
        for item in self._items(reply, what):
            if item.get("symbol") in (symbol, "", None):
                rates = self._convert(lambda i, _c: fee_rates_from(i), item, category, what)
                break
        self._fee_rates[key] = (now, rates)
        return rates

    async def _wallet_coins(
        self, coins: Sequence[str] | None = None, *, account_type: str = "UNIFIED"
    ) -> list[Mapping[str, Any]]:
        what = "GET /v5/account/wallet-balance"
        params: dict[str, Any] = {"accountType": account_type}
        if coins:
            params["coin"] = ",".join(coins)
        reply = await self._read("get_wallet_balance", params, group=Group.WALLET, what=what)
        items: list[Mapping[str, Any]] = []
        for account in self._items(reply, what):
            coin_items = account.get("coin") or []
            if not isinstance(coin_items, list):
                raise ExchangeUnavailable(f"{what}: coin is not a list")
            items.extend(i for i in coin_items if isinstance(i, Mapping))
        return items

    async def wallet_balance(
        self, coins: Sequence[str] | None = None, *, account_type: str = "UNIFIED"
    ) -> list[Balance]:
        what = "GET /v5/account/wallet-balance"
        return [
            self._convert(lambda i, _c: balance_from(i), item, None, what)
            for item in await self._wallet_coins(coins, account_type=account_type)
        ]

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
            key = (category, instrument.symbol)
            self._coins[key] = Coins(
                base=instrument.base_coin,
                quote=instrument.quote_coin,
                settle=instrument.pnl_coin,
            )
            status = str(item.get("status") or "")
            if status == "Trading":
                self._instruments[key] = (now, instrument)
            result.append((instrument, status))
        return result

    async def _learn_coins(self, category: Category, symbol: str) -> None:
        """Make the instrument's coins known, for fees Bybit reports without a currency."""
        if (category, symbol) in self._coins:
            return
        try:
            await self._instrument_items(category, symbol)
        except ExchangeError as exc:  # the call that needs them fails on its own if it must
            log.info("bybit: coins of %s %s unknown (%s)", category.value, symbol, exc)

    async def get_instrument(self, category: Category, symbol: str) -> Instrument:
        self._require_category(category)
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
                    reason_code=ReasonCode.SYMBOL_NOT_TRADING.value,
                )
            return instrument
        raise ExchangeRejected(
            f"Bybit lists no {category.value} instrument {symbol}",
            code="SYMBOL_NOT_FOUND",
            reason_code=ReasonCode.SYMBOL_NOT_TRADING.value,
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
        self._require_category(category)
        for ticker in await self.tickers(category, symbol):
            if ticker.symbol != symbol:
                continue
            price = ticker.reference_price
            if price is None:
                raise ExchangeUnavailable(f"{category.value} {symbol}: the ticker has no price")
            return price
        raise ExchangeRejected(
            f"Bybit has no {category.value} ticker {symbol}",
            code="SYMBOL_NOT_FOUND",
            reason_code=ReasonCode.SYMBOL_NOT_TRADING.value,
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
        convert: Callable[[Mapping[str, Any], Any], T],
        item: Mapping[str, Any],
        category: Category | None,
        what: str,
    ) -> T:
        """An item of a Bybit answer, converted; a malformed one means the answer cannot be
        trusted, so the call fails as unavailable (nothing is guessed)."""
        try:
            return convert(item, category)
        except (InvalidReport, ResponseError, KeyError, TypeError, ValueError) as exc:
            raise ExchangeUnavailable(f"{what}: unreadable item ({exc}): {dict(item)}") from None


def _position_idx(item: Mapping[str, Any], _category: Any) -> int:
    value = item.get("positionIdx", 0)
    if isinstance(value, bool) or value not in (0, 1, 2, "0", "1", "2"):
        raise ResponseError(f"positionIdx must be 0, 1 or 2, got {value!r}")
    return int(value)


def _leverage(item: Mapping[str, Any], _category: Any) -> Decimal | None:
    value = dec(item.get("leverage"), name="leverage")
    return value if value is not None and value > 0 else None


def _with_times(
    params: Mapping[str, Any], start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    query = dict(params)
    if start is not None:
        query["startTime"] = int(start.timestamp() * 1000)
    if end is not None:
        query["endTime"] = int(end.timestamp() * 1000)
    return query
