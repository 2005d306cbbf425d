"""A local fake of Bybit's V5 API (unified account) for tests and demos.

Strict on purpose: it checks signatures over the raw bytes, enforces the timestamp window,
validates orders against instrument rules, and answers in Bybit's own envelopes, field names,
JSON types and error codes, so that a client passing against it has a fair chance against
Bybit. Sources: Bybit's docs (the ``docs_*.json`` payloads copied into
``tests/flow/bybit_examples``) and the error texts of Bybit's open-source API gateway
(``bgw``). Messages marked "fake-bybit" are this fake's own (unsupported features).

Usage (inside the test's event loop)::

    async with FakeBybit() as fake:          # 127.0.0.1, ephemeral port
        session = pybit.unified_trading.HTTP(testnet=True, api_key=fake.api_key,
                                             api_secret="test-secret")
        session.endpoint = fake.http_url      # pybit is blocking: asyncio.to_thread(...)
        # pybit's WebSocket reads its URL from a module constant when constructed:
        monkeypatch.setattr(pybit.unified_trading, "PRIVATE_WSS", fake.ws_private_url)

Standalone (a demo aid): ``python -m tests.fake_bybit --port 8800`` prints the REST URL, the
private WebSocket URL and the key/secret (``test-key``/``test-secret`` unless ``--api-key`` /
``--api-secret``), and serves until Ctrl-C. ``--port 0`` picks a free port.

``FakeBybit(*, api_key="test-key", api_secret="test-secret", recv_window_ms=5000,
instruments=None, prices=None, balance=Decimal("100000"), coins=None, host="127.0.0.1",
port=0, ws_ack_delay=0.02, fee_rates=None, hedge_mode=False, rate_limits=True)``

* ``instruments``: :class:`Instrument` items (category + Bybit ``instruments-info`` item);
  default BTCUSDT/ETHUSDT/SOLUSDT linear (BTCUSDT verbatim from the docs example), BTCUSD
  inverse and BTCUSDT spot (docs example).
* ``prices``: last price per symbol (defaults BTCUSDT and BTCUSD 60000, ETHUSDT 3000,
  SOLUSDT 150).
* ``fee_rates``: ``{category: (taker, maker)}`` over the defaults (derivatives 0.055 % /
  0.02 %, spot 0.1 % / 0.1 %); a negative maker rate is a rebate.
* ``hedge_mode``: derivatives orders need ``positionIdx`` 1/2 (see below).
* ``rate_limits``: Bybit's per-UID limits, on by default (see
  :mod:`tests.fake_bybit.ratelimit`); a test that needs more switches them off explicitly
  (``FakeBybit(rate_limits=False)`` or ``fake.rate_limits = False``).
* ``balance``: USDT wallet balance; ``coins``: other coin balances (e.g. ``{"BTC": ...}``).
* ``recv_window_ms``: the window applied when a request has no ``X-BAPI-RECV-WINDOW``.
* ``ws_ack_delay``: pause before each subscribe ack (see :mod:`tests.fake_bybit.ws`).

Attributes and methods:

* ``await start()`` / ``await stop()``, or ``async with``.
* ``http_url`` (``http://127.0.0.1:PORT``), ``ws_private_url`` (``ws://…/v5/private``).
* ``create_calls``: every ``POST /v5/order/create`` body that passed authentication, in
  order, parsed (numbers as ``Decimal``, strings as sent), including rejected, duplicate,
  throttled and faulted ones.
* ``orders``: live ``dict`` orderLinkId → :class:`FakeOrder` (orders without an orderLinkId
  are in ``exchange.orders_by_id``). ``exchange`` is the whole state (positions, wallet,
  executions).
* ``clock_skew_ms``: added to the server clock (positive: the server runs ahead, so client
  timestamps look stale → 10002).
* ``await set_price(symbol, price)``: new last/mark/index price for the symbol (every
  category); fills each resting limit order it crosses at the order's price, as maker.
* ``await fill(order_link_id, qty=None, price=None)``: a maker fill of a resting order
  (default: all that is left, at its price); ``PartiallyFilled`` until nothing is left.
* ``await fill_in_parts(order_link_id, [(qty, price), ...])``: several maker fills in one
  change: one ``execution`` message and one ``order`` message with several items each.
* ``executions_out_of_order = True`` (a switch): each change's execution message comes after
  its order message, items newest first.
* ``hold_executions()`` / ``release_executions(newest_first=True)``: execution messages are
  held back (orders still go out, with Bybit's cumulative figures) and then delivered in one
  message, newest first: executions out of order and after their order.
* ``set_fee_rates(category, taker=..., maker=...)``; ``set_hedge_mode(bool)``.
* ``advance_clock(seconds)``: the exchange's clock moves on (order times, history
  retention); signatures are still checked against the real clock.
* ``ban_ip(seconds=600, status=403)`` / ``lift_ban()``: every REST request is answered with
  HTTP 403 "access too frequent" (or 429) and nothing is executed; ``banned_requests``
  counts them.
* ``forget_from_realtime(order_link_id)``: the order disappears from ``/v5/order/realtime``
  (as after a Bybit restart, or past the 500 recent closed orders) but stays in history.
* ``ws_connections``: private connections open and authenticated; ``auth_failures``: failed
  ``auth`` ops so far.
* ``await drop_ws()``: cut every private connection at the TCP level (no close frame).
* ``await push_raw(message)``: send ``message`` as is to every authenticated connection that
  has at least one subscription.

Fault switches (each applies to the next matching request(s), then clears itself):

* ``fail_next(path, status=502, *, execute=False)``: the next request to ``path`` gets an
  HTTP ``status`` (5xx) with an HTML gateway error page, not JSON, and no ``X-Bapi-*``
  headers. It is answered before authentication and nothing happens, unless
  ``execute=True``: then the request is processed (an order is placed) and only the answer is
  replaced by the error page.
* ``throttle(path, count=1, *, reset_ms=300)``: the next ``count`` authenticated requests to
  ``path`` get ``retCode`` 10006 "Too many visits!" with ``X-Bapi-Limit-Status: 0`` and
  ``X-Bapi-Limit-Reset-Timestamp`` ``reset_ms`` in the future; nothing happens. (pybit retries
  10006 by default after sleeping until the reset time.)
* ``reject_next_create(ret_code, ret_msg)``: the next authenticated create is answered with
  that Bybit error; nothing is placed.
* ``reject_next_create_after_ack(reject_reason="EC_Others")``: the next valid create is
  acknowledged (``retCode`` 0) and the order then goes straight to ``Rejected`` with that
  ``rejectReason`` (Bybit's order entry is asynchronous: an ack is not a fill or even a
  resting order).
* ``timeout_next_create(*, execute, delay=15.0, close=False)``: the next authenticated create
  is held for ``delay`` seconds (pybit's default timeout is 10 s). With ``execute=True`` the
  order is placed (and streamed) first and, after the hold, the normal answer is sent; with
  ``execute=False`` nothing is placed and, after the hold, the connection is closed without
  an answer. ``close=True`` always closes without an answer after the hold (``delay=0``: at
  once). Stopping the server ends every hold.

REST (all private endpoints verify ``X-BAPI-*`` headers; every answer is Bybit's envelope
``{"retCode","retMsg","result","retExtInfo":{},"time"}`` with HTTP 200, numbers as strings):

* Authentication (gateway order): missing key/timestamp/signature → 10001 ``empty value: …``;
  unparsable timestamp/window → 10001; outside ``server - recvWindow <= ts < server + 1000``
  → 10002 ``invalid request, please check your server timestamp or recv_window param.
  req_timestamp[…],server_timestamp[…],recv_window[…]``; unknown key → 10003 ``API key is
  invalid.``; bad signature → 10004 ``error sign! origin_string[<signed string>]``. The signed
  string is ``timestamp + key + X-BAPI-RECV-WINDOW (as sent, "" if absent) + payload`` where
  the payload is the raw query string (GET) or the raw body bytes (POST).
* ``POST /v5/order/create`` (linear/inverse: lot/tick/min-notional 110094/reduce-only
  110017/margin 110007 rules, duplicate orderLinkId 110072, ``positionIdx`` checked against
  the account's mode with 10001 "position idx not match position mode"; spot: 1701xx codes,
  duplicate 170141, ``marketUnit`` with Bybit's default of ``quoteCoin`` for market buys),
  ``POST /v5/order/cancel`` (110001 / spot 170213), ``POST /v5/order/cancel-all``,
  ``GET /v5/order/realtime`` (``openOnly``, cursor paging), ``GET /v5/order/history``
  (cancelled/rejected orders without fills only for 24 h), ``GET /v5/execution/list``,
  ``GET /v5/position/list`` (one-way, or both hedge sides), ``GET /v5/account/fee-rate``,
  ``GET /v5/account/wallet-balance`` (``accountType=UNIFIED``; every coin, spot coins
  included); public: ``GET /v5/market/instruments-info``, ``/v5/market/tickers``,
  ``/v5/market/time``.
  Anything else → HTTP 404 with a 10017 "Route not found." body.
* Every answer from "Bybit" (not the gateway pages of ``fail_next``) carries
  ``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` and a future ``X-Bapi-Limit-Reset-Timestamp``
  (see :mod:`tests.fake_bybit.ratelimit`).
* Matching: one price per symbol and unlimited liquidity; market and crossing limit orders
  fill at once in full at the last price (taker); resting limit orders fill at their price
  (maker). PostOnly orders that would cross are ``Cancelled`` with
  ``EC_PostOnlyWillTakeLiquidity``; IOC/FOK that do not cross are ``Cancelled``. Leverage 10.
* Fees: derivatives pay in the settle coin (USDT; BTC for inverse), ``execFee`` negative for
  a rebate. Spot pays a fee in the coin it receives (a buy: the base coin) and gets a rebate
  in the coin it gives; ``feeCurrency`` (execution stream, spot REST executions, spot order
  stream) and ``cumFeeDetail`` (``{coin: amount}``, every coin the order paid in) say which.
  Derivatives REST executions leave ``feeCurrency`` empty, as the docs' example does.
* Inverse (``BTCUSD``): ``qty`` in contracts of 1 USD; ``execValue``/``cumExecValue``,
  margin, fees and PnL in BTC; averages are harmonic.
* Positions: one-way (``positionIdx`` 0), or with ``hedge_mode`` a long (1) and a short (2)
  side per symbol; a sell on side 1 or a buy on side 2 closes that side (trimmed like
  reduce-only).

Private WebSocket ``/v5/private``: see :mod:`tests.fake_bybit.ws`. Exit a pybit
``WebSocket`` (``ws.exit()``) before stopping the fake: ``stop()`` closes the sockets, pybit
then retries against a closed port and finally raises in its thread. For each change it pushes,
in this order, ``execution``, ``order``, ``position`` (derivatives) and ``wallet``, one message
per topic with every item of the change; for other order changes ``order`` (and
``position``). An order that fills at once is pushed only in its final state (no ``New``
first).
"""

from tests.fake_bybit.instruments import Instrument, default_instruments, linear_instrument
from tests.fake_bybit.model import FakeOrder
from tests.fake_bybit.server import FakeBybit

__all__ = ["FakeBybit", "FakeOrder", "Instrument", "default_instruments", "linear_instrument"]
