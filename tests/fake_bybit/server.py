"""The fake Bybit V5 server: one aiohttp application serving REST and the private WebSocket.

See the package docstring (``tests/fake_bybit/__init__.py``) for the interface.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fake_bybit import ratelimit
from tests.fake_bybit.faults import (
    CreateRejection,
    CreateRejectionAfterAck,
    CreateTimeout,
    Faults,
    gateway_page,
)
from tests.fake_bybit.instruments import DEFAULT_PRICES, Instrument, default_instruments
from tests.fake_bybit.model import BybitError, FakeOrder
from tests.fake_bybit.queries import Queries
from tests.fake_bybit.signing import check_request
from tests.fake_bybit.state import Event, Exchange
from tests.fake_bybit.ws import PrivateStream

_Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]

#: The account id that prefixes WebSocket message ids.
UID = "100475188"


class FakeBybit:
    """A local Bybit V5 (unified account) for tests and demos; see the package docstring."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        api_secret: str = "test-secret",  # noqa: S107 - the fake's own test credential
        recv_window_ms: int = 5000,
        instruments: Iterable[Instrument] | None = None,
        prices: Mapping[str, Decimal] | None = None,
        balance: Decimal = Decimal("100000"),
        coins: Mapping[str, Decimal] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_ack_delay: float = 0.02,
        fee_rates: Mapping[str, tuple[Decimal, Decimal]] | None = None,
        hedge_mode: bool = False,
        rate_limits: bool = True,
    ) -> None:
        self.api_key = api_key
        self._api_secret = api_secret
        self.recv_window_ms = recv_window_ms
        #: Added to the server's clock; a positive value makes client timestamps look stale.
        self.clock_skew_ms = 0
        #: Added to the exchange's business clock only (order times, history retention);
        #: authentication keeps the real clock. See :meth:`advance_clock`.
        self.time_offset_ms = 0
        #: Bybit's per-UID rate limits answer 10006 beyond the limit; off: never enforced.
        self.rate_limits = rate_limits
        #: Requests refused with the HTTP 403/429 of :meth:`ban_ip` so far.
        self.banned_requests = 0
        self._ban: tuple[float, int] | None = None
        self._host = host
        self._port = port
        self.create_calls: list[dict[str, Any]] = []
        balances = {"USDT": Decimal(balance), **{k: Decimal(v) for k, v in (coins or {}).items()}}
        self.exchange = Exchange(
            default_instruments() if instruments is None else instruments,
            {**DEFAULT_PRICES, **(prices or {})},
            balances,
            self.exchange_now_ms,
            fee_rates=fee_rates,
            hedge_mode=hedge_mode,
        )
        self._faults = Faults()
        self._rates = ratelimit.RateCounter()
        self._stream = PrivateStream(
            api_key=api_key,
            api_secret=api_secret,
            uid=UID,
            clock=self.now_ms,
            ack_delay=ws_ack_delay,
        )
        queries = Queries(self.exchange)
        self._routes: dict[tuple[str, str], tuple[bool, _Handler]] = {
            ("POST", "/v5/order/create"): (True, self._create),
            ("POST", "/v5/order/cancel"): (True, self._mutation(self.exchange.cancel)),
            ("POST", "/v5/order/cancel-all"): (True, self._mutation(self.exchange.cancel_all)),
            ("GET", "/v5/order/realtime"): (True, self._query(queries.realtime)),
            ("GET", "/v5/order/history"): (True, self._query(queries.history)),
            ("GET", "/v5/execution/list"): (True, self._query(queries.execution_list)),
            ("GET", "/v5/position/list"): (True, self._query(queries.position_list)),
            ("GET", "/v5/account/wallet-balance"): (
                True,
                self._query(queries.wallet_balance),
            ),
            ("GET", "/v5/account/fee-rate"): (True, self._query(queries.fee_rate)),
            ("GET", "/v5/market/instruments-info"): (
                False,
                self._query(queries.instruments_info),
            ),
            ("GET", "/v5/market/tickers"): (False, self._query(queries.tickers)),
            ("GET", "/v5/market/time"): (False, self._server_time),
        }
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._base: str | None = None

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v5/private", self._stream.handle)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._base = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        await self._stream.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBybit:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def http_url(self) -> str:
        return f"http://{self._started()}"

    @property
    def ws_private_url(self) -> str:
        return f"ws://{self._started()}/v5/private"

    def _started(self) -> str:
        if self._base is None:
            raise RuntimeError("FakeBybit is not started")
        return self._base

    def now_ms(self) -> int:
        """The clock requests are authenticated against."""
        return int(time.time() * 1000) + self.clock_skew_ms

    def exchange_now_ms(self) -> int:
        """The exchange's clock: order and execution times, history retention."""
        return self.now_ms() + self.time_offset_ms

    # ------------------------------------------------------------ test hooks

    @property
    def orders(self) -> dict[str, FakeOrder]:
        """Every order that has an ``orderLinkId``, by it (live view)."""
        return self.exchange.orders_by_link

    @property
    def ws_connections(self) -> int:
        """Private connections currently open and authenticated."""
        return self._stream.authenticated_connections

    @property
    def auth_failures(self) -> int:
        return self._stream.auth_failures

    async def set_price(self, symbol: str, price: Decimal) -> None:
        self._publish(self.exchange.set_price(symbol, Decimal(price)))

    async def fill(
        self, order_link_id: str, qty: Decimal | None = None, price: Decimal | None = None
    ) -> None:
        self._publish(self.exchange.fill(self.orders[order_link_id], qty, price))

    async def fill_in_parts(self, order_link_id: str, parts: list[tuple[Decimal, Decimal]]) -> None:
        """Several maker fills ``(qty, price)`` of one order, pushed as one message each for
        executions and orders (several items per message, as Bybit does)."""
        self._publish(self.exchange.fill_in_parts(self.orders[order_link_id], parts))

    @property
    def executions_out_of_order(self) -> bool:
        """The switch: each change's executions are pushed after its orders, newest first."""
        return self._stream.executions_out_of_order

    @executions_out_of_order.setter
    def executions_out_of_order(self, on: bool) -> None:
        self._stream.executions_out_of_order = on

    def hold_executions(self) -> None:
        """From now on execution messages are held back (orders still go out) ..."""
        self._stream.hold_executions()

    def release_executions(self, *, newest_first: bool = True) -> None:
        """... until this pushes them all in one message, newest first by default."""
        self._stream.release_executions(newest_first=newest_first)

    def set_fee_rates(self, category: str, *, taker: Decimal, maker: Decimal) -> None:
        """Fee rates of later fills (a negative maker rate is a rebate)."""
        self.exchange.fee_rates[category] = (Decimal(taker), Decimal(maker))

    def set_hedge_mode(self, hedge: bool) -> None:
        """Switch the account between one-way and hedge mode (derivatives)."""
        self.exchange.hedge_mode = hedge

    def advance_clock(self, seconds: float) -> None:
        """Move the exchange's clock forward (e.g. past the history's 24 h for unfilled
        cancelled orders); signatures are still checked against the real clock."""
        self.time_offset_ms += int(seconds * 1000)

    def ban_ip(self, seconds: float = 600.0, *, status: int = 403) -> None:
        """Answer every REST request with HTTP ``status`` (403: IP banned, "access too
        frequent"; 429: frequency protection) for ``seconds``; nothing is executed."""
        if status not in (403, 429):
            raise ValueError("a ban is HTTP 403 or 429")
        self._ban = (time.monotonic() + seconds, status)

    def lift_ban(self) -> None:
        self._ban = None

    def forget_from_realtime(self, order_link_id: str) -> None:
        """From now on ``/v5/order/realtime`` no longer shows the order; history still does."""
        self.orders[order_link_id].in_realtime = False

    def reject_next_create(self, ret_code: int, ret_msg: str) -> None:
        self._faults.reject_next_create(ret_code, ret_msg)

    def reject_next_create_after_ack(self, reject_reason: str = "EC_Others") -> None:
        self._faults.reject_next_create_after_ack(reject_reason)

    def timeout_next_create(
        self, *, execute: bool, delay: float = 15.0, close: bool = False
    ) -> None:
        self._faults.timeout_next_create(execute, delay, close)

    def fail_next(self, path: str, status: int = 502, *, execute: bool = False) -> None:
        self._faults.fail_next(path, status, execute)

    def throttle(self, path: str, count: int = 1, *, reset_ms: int = 300) -> None:
        self._faults.throttle(path, count, reset_ms)

    async def drop_ws(self) -> None:
        self._stream.drop_all()

    async def push_raw(self, message: dict[str, Any]) -> None:
        self._stream.push_raw(message)

    # ------------------------------------------------------------------ HTTP

    def _publish(self, events: list[Event]) -> None:
        self._stream.publish(events)

    def _envelope(
        self,
        result: Mapping[str, Any],
        *,
        ret_code: int = 0,
        ret_msg: str = "OK",
        status: int = 200,
    ) -> web.Response:
        body = {
            "retCode": ret_code,
            "retMsg": ret_msg,
            "result": result,
            "retExtInfo": {},
            "time": self.now_ms(),
        }
        return web.Response(text=json.dumps(body), status=status, content_type="application/json")

    def _error(self, error: BybitError) -> web.Response:
        return self._envelope({}, ret_code=error.ret_code, ret_msg=error.ret_msg)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self._ban is not None:
            until, status = self._ban
            if time.monotonic() < until:
                # Bybit's edge refuses before anything else: no JSON, no X-Bapi-* headers.
                self.banned_requests += 1
                return web.Response(text="access too frequent", status=status)
            self._ban = None
        failure = self._faults.take_gateway_failure(path)
        if failure is not None:
            # The page comes from the gateway in front of Bybit: no X-Bapi-* headers on it.
            if failure.execute:
                await self._serve(request, path)
            return _gateway_error(failure.status)
        return await self._serve(request, path)

    async def _serve(self, request: web.Request, path: str) -> web.StreamResponse:
        route = self._routes.get((request.method, path))
        if route is None:
            response = self._envelope({}, ret_code=10017, ret_msg="Route not found.", status=404)
            return self._counted(response, path, "", enforce=False)
        private, handler = route
        raw_body = await request.read()
        if private:
            payload = raw_body if request.method == "POST" else _raw_query(request).encode()
            auth_error = check_request(
                request.headers,
                payload,
                now_ms=self.now_ms(),
                keys={self.api_key: self._api_secret},
                default_recv_window=self.recv_window_ms,
            )
            if auth_error is not None:
                response = self._envelope(
                    {}, ret_code=auth_error.ret_code, ret_msg=auth_error.ret_msg
                )
                return self._counted(response, path, "", enforce=False)
        body: dict[str, Any] = {}
        if request.method == "POST":
            try:
                parsed = json.loads(raw_body, parse_float=Decimal)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                return self._error(BybitError(10001, "Request parameter error."))
            body = parsed
            if path == "/v5/order/create":
                self.create_calls.append(body)
        else:
            body = _first_values(request)
        category = body.get("category")
        key = ratelimit.limit_key(path, category if isinstance(category, str) else "")
        allowed, rate_headers = self._rates.record(
            key, self.now_ms(), enforce=private and self.rate_limits
        )
        throttle = self._faults.take_throttle(path) if private else None
        if throttle is not None or not allowed:
            response = self._envelope({}, ret_code=10006, ret_msg="Too many visits!")
            reset = self.now_ms() + throttle.reset_ms if throttle is not None else None
            if reset is not None:
                rate_headers = ratelimit.headers(ratelimit.limit_for(key), 0, reset)
            response.headers.update(rate_headers)
            return response
        response = await handler(request, body)
        if not response.prepared:
            for name, value in rate_headers.items():
                response.headers.setdefault(name, value)
        return response

    def _counted(
        self, response: web.Response, path: str, category: str, *, enforce: bool
    ) -> web.Response:
        _, rate_headers = self._rates.record(
            ratelimit.limit_key(path, category), self.now_ms(), enforce=enforce
        )
        response.headers.update(rate_headers)
        return response

    async def _create(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        fault = self._faults.take_create_fault()
        if isinstance(fault, CreateRejection):
            return self._error(BybitError(fault.ret_code, fault.ret_msg))
        if isinstance(fault, CreateRejectionAfterAck):
            reason = fault.reject_reason
            return self._apply(lambda b: self.exchange.create(b, reject_reason=reason), body)
        if not isinstance(fault, CreateTimeout):
            return self._apply(self.exchange.create, body)
        response = self._apply(self.exchange.create, body) if fault.execute else None
        stopped = await self._hold(fault.delay)
        if response is None or fault.close or stopped:
            # Close the connection without a byte of answer, like a dropped proxy.
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=204)
        return response

    async def _hold(self, delay: float) -> bool:
        """Waits ``delay`` seconds; True if the server began stopping meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True

    def _apply(
        self,
        change: Callable[[Mapping[str, Any]], tuple[Mapping[str, Any], list[Event]]],
        body: Mapping[str, Any],
    ) -> web.Response:
        try:
            result, events = change(body)
        except BybitError as error:
            return self._error(error)
        self._publish(events)
        return self._envelope(result)

    def _mutation(
        self, change: Callable[[Mapping[str, Any]], tuple[Mapping[str, Any], list[Event]]]
    ) -> _Handler:
        async def handler(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
            return self._apply(change, body)

        return handler

    def _query(self, read: Callable[[Mapping[str, str]], Mapping[str, Any]]) -> _Handler:
        async def handler(request: web.Request, query: dict[str, Any]) -> web.StreamResponse:
            try:
                return self._envelope(read(query))
            except BybitError as error:
                return self._error(error)

        return handler

    async def _server_time(self, request: web.Request, query: dict[str, Any]) -> web.Response:
        now_ns = time.time_ns() + self.clock_skew_ms * 1_000_000
        return self._envelope({"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)})


def _raw_query(request: web.Request) -> str:
    """The query string exactly as it arrived, before any percent-decoding."""
    _, _, query = request.raw_path.partition("?")
    return query


def _first_values(request: web.Request) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in request.query.items():
        values.setdefault(key, value)
    return values


def _gateway_error(status: int) -> web.Response:
    return web.Response(text=gateway_page(status), status=status, content_type="text/html")
