"""pybit's blocking HTTP client, used from asyncio without ever blocking the event loop.

* Every call runs in a bounded thread pool (one for creates and cancels, one for reads, so a
  burst of slow reads never delays an order) through ``loop.run_in_executor``.
* Each worker thread has its own ``pybit.unified_trading.HTTP`` (its own
  ``requests.Session``): sessions are never shared between threads.
* pybit never re-sends anything: ``max_retries=1`` (a single attempt; 0 would mean none),
  ``force_retry=False`` (timeouts are raised, not retried) and ``retry_codes`` emptied
  *after* construction (pybit replaces an empty set given to the constructor with its
  defaults, 10002 and 10006 included, which it "handles" by sleeping and re-sending). Reads
  are retried here instead, asynchronously; creates and cancels never.
* The base URL override is set on the session's ``endpoint`` attribute, from which pybit
  builds every URL at call time.
* pybit parses responses with floats; the raw body is captured with a ``requests`` response
  hook and parsed again with ``parse_float=Decimal``. ``return_response_headers=True`` gives
  the ``X-Bapi-Limit*`` headers the rate limiter follows.
* HTTP 403/429 put the client into a ban (:mod:`plugins_builtin.bybit.ban`): no request at
  all leaves until it ends, and every call fails at once meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from om_plugins import ExchangeError, ExchangeUnavailable
from plugins_builtin.bybit.ban import BanGuard
from plugins_builtin.bybit.errors import Operation, ResponseError, classify
from plugins_builtin.bybit.ratelimit import RateLimiter, parse_limit_headers
from plugins_builtin.bybit.settings import BybitSettings, Credentials

__all__ = ["BybitClient", "Reply"]

log = logging.getLogger(__name__)

#: pybit adds a stream handler to its logger for every session it builds when the root
#: logger has none; building sessions one at a time lets us take those handlers off again.
_SESSION_INIT_LOCK = threading.Lock()
_PYBIT_HTTP_LOGGER = "pybit._http_manager"
#: A read failing transiently is retried only if it would wait at most this long.
_MAX_READ_RETRY_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful response: the whole JSON envelope (Decimals for numbers) and headers."""

    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def result(self) -> Mapping[str, Any]:
        result = self.body.get("result")
        if not isinstance(result, Mapping):
            raise ResponseError("response has no result object")
        return result

    def items(self) -> list[Mapping[str, Any]]:
        """``result.list``; an absent list is empty."""
        items = self.result.get("list") or []
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise ResponseError("result.list is not a list of objects")
        return items

    @property
    def cursor(self) -> str:
        return str(self.result.get("nextPageCursor") or "")


class _Session:
    """One thread's pybit session and the last raw response it received."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.last_response: Any = None

    def record(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.last_response = response


class BybitClient:
    def __init__(
        self,
        settings: BybitSettings,
        credentials: Credentials,
        limiter: RateLimiter,
        ban: BanGuard | None = None,
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self.limiter = limiter
        self.ban = ban or BanGuard(initial=settings.ban_initial_s, maximum=settings.ban_max_s)
        self.base_url = settings.http_url
        self._trade_pool = ThreadPoolExecutor(
            max_workers=settings.trade_workers, thread_name_prefix="bybit-trade"
        )
        self._read_pool = ThreadPoolExecutor(
            max_workers=settings.read_workers, thread_name_prefix="bybit-read"
        )
        # A rate-limit token is taken only once a worker is free to send at once: a token
        # spent while the request waits in the pool would let Bybit see more requests in
        # its rolling second than we counted.
        self._trade_slots = asyncio.Semaphore(settings.trade_workers)
        self._read_slots = asyncio.Semaphore(settings.read_workers)
        self._local = threading.local()
        self._sessions: list[_Session] = []
        self._sessions_lock = threading.Lock()
        self._closed = False

    @property
    def _secrets(self) -> tuple[str, str]:
        return (self._credentials.api_secret, self._credentials.api_key)

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Wait for requests in flight (bounded by the request timeout), then release."""
        if self._closed:
            return
        self._closed = True
        for pool in (self._trade_pool, self._read_pool):
            await asyncio.to_thread(pool.shutdown, wait=True)
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.http.client.close()

    # -- calls ---------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        group: str,
        operation: Operation,
        what: str,
    ) -> Reply:
        """Call pybit's ``HTTP.<method>(**params)`` once per attempt, rate limited by
        ``group``; failures are raised as typed :mod:`om_plugins.errors` outcomes."""
        attempts = self._settings.read_attempts if operation is Operation.READ else 1
        delay = 0.2
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(method, params, group, operation, what)
            except ExchangeUnavailable as exc:
                wait = exc.retry_after if exc.retry_after is not None else delay
                if attempt == attempts or wait > _MAX_READ_RETRY_WAIT:
                    raise
                log.info("bybit: %s (attempt %d of %d); retrying", exc, attempt, attempts)
                await asyncio.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        params: Mapping[str, Any],
        group: str,
        operation: Operation,
        what: str,
    ) -> Reply:
        if self._closed:
            raise ExchangeUnavailable(f"{what}: the Bybit client is closed")
        self.ban.check(what)
        reading = operation is Operation.READ
        async with self._read_slots if reading else self._trade_slots:
            await self.limiter.acquire(group)
            # A ban may have begun while this request waited for its turn.
            started = self.ban.check(what)
            pool = self._read_pool if reading else self._trade_pool
            loop = asyncio.get_running_loop()
            try:
                pending = loop.run_in_executor(pool, self._blocking_call, method, dict(params))
            except RuntimeError:  # the pool is shut down: nothing was sent
                raise ExchangeUnavailable(f"{what}: the Bybit client is closed") from None
            try:
                reply = await pending
            except ExchangeError:
                raise
            except (InvalidRequestError, FailedRequestError) as exc:
                self.limiter.observe(
                    group,
                    parse_limit_headers(exc.resp_headers),
                    throttled=isinstance(exc, InvalidRequestError) and exc.status_code == 10006,
                )
                failure = self._failed(exc, operation, what)
                if (
                    isinstance(exc, FailedRequestError)
                    and exc.resp_headers is not None
                    and exc.status_code in (403, 429)
                    and isinstance(failure, ExchangeUnavailable)
                ):
                    failure.retry_after = self.ban.trip(int(exc.status_code), started)
                raise failure from None
            except Exception as exc:
                raise self._failed(exc, operation, what) from None
        self.ban.succeeded()
        self.limiter.observe(group, parse_limit_headers(reply.headers))
        return reply

    def _failed(self, exc: Exception, operation: Operation, what: str) -> ExchangeError:
        outcome = classify(exc, operation, what=what, secrets=self._secrets)
        log.warning("bybit: %s", outcome.message)
        return outcome

    # -- worker threads ------------------------------------------------------------------------

    def _session(self) -> _Session:
        session: _Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._new_session()
            self._local.session = session
        return session

    def _new_session(self) -> _Session:
        settings = self._settings
        with _SESSION_INIT_LOCK:
            pybit_log = logging.getLogger(_PYBIT_HTTP_LOGGER)
            before = list(pybit_log.handlers)
            http = HTTP(
                testnet=settings.testnet,
                demo=settings.demo,
                api_key=self._credentials.api_key,
                api_secret=self._credentials.api_secret,
                recv_window=settings.recv_window_ms,
                timeout=settings.request_timeout_s,
                max_retries=1,
                force_retry=False,
                log_requests=False,
                return_response_headers=True,
            )
            for handler in list(pybit_log.handlers):
                if handler not in before:
                    pybit_log.removeHandler(handler)
        http.endpoint = self.base_url
        http.retry_codes = set()
        http.ignore_codes = set()
        session = _Session(http)
        http.client.hooks["response"].append(session.record)
        with self._sessions_lock:
            self._sessions.append(session)
        return session

    def _blocking_call(self, method: str, params: dict[str, Any]) -> Reply:
        session = self._session()
        session.last_response = None
        try:
            result = getattr(session.http, method)(**params)
            response = session.last_response
        finally:
            session.last_response = None
        if response is None:
            raise ResponseError("no response was recorded")
        headers = result[2] if isinstance(result, tuple) and len(result) == 3 else {}
        body = json.loads(response.content, parse_float=Decimal)
        if not isinstance(body, dict):
            raise ResponseError("the response is not a JSON object")
        return Reply(body=body, headers=dict(headers))
