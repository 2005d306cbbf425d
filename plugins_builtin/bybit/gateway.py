"""The WS-Gateway: Bybit's private ``order`` and ``execution`` streams onto ``ws-gateway.order``.

Registered as the ``bybit`` stream gateway (``om_register_stream_gateways``): ``om ws-gateway``
and ``om run --with-ws-gateway`` build it from the engine's
:class:`~om_plugins.GatewayContext`, whose ``publish`` puts one message on the queue with
publisher confirms. The adapter's ``decode_stream`` reads what it publishes.

Every stream message is published **unchanged** (its bytes as Bybit sent them) inside an
envelope::

    {"source": "ws-gateway", "account": "<label>", "received_at": "<ISO UTC>", "data": <msg>}

and after every (re)connection, once authenticated and subscribed, a control message::

    {"source": "ws-gateway", "type": "gateway.reconnected", "account": "<label>", "at": "<ISO>"}

so the Order Manager reconciles what it may have missed while the stream was down (Bybit
does not replay). The first connection announces itself the same way.

How it stays up (pybit's stream alone does not, see :mod:`plugins_builtin.bybit.stream`):

* pybit's socket thread only appends the message to a bounded in-memory queue; publishing
  happens on the event loop, with publisher confirms, retried until the broker confirms.
  A message leaves the queue only once confirmed. When the queue is full the socket thread
  waits (the stream pauses, loudly logged) rather than dropping anything.
* A supervisor watches the connection (closed socket, no frame or pong for longer than ping
  interval + timeout) and rebuilds the pybit ``WebSocket`` with exponential backoff, forever.
  An authentication failure is logged as an error and retried the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from om_plugins import GatewayContext
from plugins_builtin.bybit.decode import RECONNECTED
from plugins_builtin.bybit.settings import BybitSettings
from plugins_builtin.bybit.stream import PrivateStream

__all__ = [
    "RECONNECTED",
    "SOURCE",
    "Gateway",
    "GatewayConfig",
    "control_message",
    "envelope",
]

log = logging.getLogger(__name__)

SOURCE = "ws-gateway"
#: The queue the engine's context publishes to (for logs only).
QUEUE = "ws-gateway.order"
TOPICS = ("order", "execution")
#: A connection that lived this long was healthy: the next one is attempted at once.
STABLE_AFTER = 30.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def envelope(raw: str, *, account: str, received_at: str) -> bytes:
    """The published body: the raw message spliced in as ``data``, byte for byte."""
    head = json.dumps({"source": SOURCE, "account": account, "received_at": received_at})
    return f'{head[:-1]}, "data": {raw}}}'.encode()


def control_message(kind: str, *, account: str, at: str) -> bytes:
    return json.dumps({"source": SOURCE, "type": kind, "account": account, "at": at}).encode()


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What the gateway needs; :meth:`from_settings` reads it from ``OM_BYBIT_*``."""

    ws_url: str
    api_key: str
    api_secret: SecretStr
    account: str = "default"
    testnet: bool = True
    demo: bool = False
    ping_interval: float = 20.0
    ping_timeout: float = 10.0
    connect_timeout: float = 15.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    queue_size: int = 10_000
    #: Seconds the auth signature stays valid; pybit's default of 1 is rejected under skew.
    auth_expire: int = 10
    #: How long unpublished messages may take to go out when stopping.
    drain_grace: float = 5.0

    def __post_init__(self) -> None:
        if self.ping_interval <= self.ping_timeout:
            raise ValueError("ping_interval must be longer than ping_timeout")

    def __repr__(self) -> str:  # the key is not secret, but has no business in logs either
        return f"GatewayConfig(ws_url={self.ws_url!r}, account={self.account!r})"

    @property
    def stale_after(self) -> float:
        """A connection with no frame and no pong for this long is taken for dead."""
        return self.ping_interval + self.ping_timeout + 5.0

    @classmethod
    def from_bybit(cls, settings: BybitSettings) -> GatewayConfig:
        """From the plugin's ``OM_BYBIT_*`` settings (credentials required)."""
        credentials = settings.credentials()
        return cls(
            ws_url=settings.private_ws_url,
            api_key=credentials.api_key,
            api_secret=SecretStr(credentials.api_secret),
            account=settings.account_label,
            testnet=settings.testnet,
            demo=settings.demo,
            ping_interval=settings.ws_ping_interval_s,
            ping_timeout=settings.ws_ping_timeout_s,
            connect_timeout=settings.ws_connect_timeout_s,
            backoff_initial=settings.ws_reconnect_initial_s,
            backoff_max=settings.ws_reconnect_max_s,
            queue_size=settings.ws_queue_size,
        )


@dataclass(frozen=True, slots=True)
class _Outgoing:
    body: bytes
    message_id: str
    type: str


class _Inbox:
    """Bounded FIFO from socket threads to the publisher task.

    Producers on socket threads wait while it is full; the loop side may always add (control
    messages). An item is removed only after it was published.
    """

    def __init__(self, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        self._maxsize = maxsize
        self._loop = loop
        self._items: deque[_Outgoing] = deque()
        self._cond = threading.Condition()
        self._ready = asyncio.Event()
        self._emptied = asyncio.Event()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put_from_thread(self, item: _Outgoing, stop: threading.Event) -> bool:
        with self._cond:
            warned = False
            while len(self._items) >= self._maxsize:
                if stop.is_set():
                    return False
                if not warned:
                    log.error(
                        "ws-gateway: %d messages wait for the broker (queue full); the Bybit "
                        "stream is paused until they are published",
                        len(self._items),
                    )
                    warned = True
                self._cond.wait(timeout=0.5)
            self._items.append(item)
        self._wake()
        return True

    def put(self, item: _Outgoing) -> None:
        with self._cond:
            self._items.append(item)
        self._ready.set()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed: the gateway is gone
            pass

    async def peek(self) -> _Outgoing:
        while True:
            with self._cond:
                if self._items:
                    return self._items[0]
            # No await between the check and clear(): a producer's wake-up is scheduled
            # on the loop, so it runs after clear() and is not lost.
            self._ready.clear()
            await self._ready.wait()

    def pop(self) -> None:
        with self._cond:
            self._items.popleft()
            empty = not self._items
            self._cond.notify_all()
        if empty:
            self._emptied.set()

    async def drained(self) -> None:
        """Return once every queued message is published."""
        while len(self):
            self._emptied.clear()
            await self._emptied.wait()


class _AuthFailed(Exception):
    pass


class _Link:
    """One connection attempt: the pybit stream and what it reported, seen from the loop."""

    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop) -> None:
        self._gateway = gateway
        self._loop = loop
        self.stream: PrivateStream | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ready.add_done_callback(_retrieve)
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._authenticated = False
        self._subscriptions = 0

    # -- StreamListener, on socket threads ----------------------------------------------------

    def attach(self, stream: PrivateStream) -> None:
        self.stream = stream

    def on_data(self, raw: str, topic: str) -> None:
        item = _Outgoing(
            body=envelope(raw, account=self._gateway.config.account, received_at=_now_iso()),
            message_id=uuid.uuid4().hex,
            type=topic,
        )
        if not self._gateway.inbox.put_from_thread(item, self._gateway.stopping):
            log.error(
                "ws-gateway: stopping with the queue full; a %s message was not published: %.500s",
                topic,
                raw,
            )

    def on_auth(self, success: bool, reason: str) -> None:
        self._call(self._auth_result, success, reason)

    def on_subscribed(self, success: bool, reason: str) -> None:
        self._call(self._subscribed, success, reason)

    def on_closed(self, reason: str) -> None:
        self._call(self._closed, reason)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass

    # -- on the loop -------------------------------------------------------------------------

    def _auth_result(self, success: bool, reason: str) -> None:
        if success:
            self._authenticated = True
            self._check_ready()
        elif not self.ready.done():
            self.ready.set_exception(_AuthFailed(reason))

    def _subscribed(self, success: bool, reason: str) -> None:
        if not success:
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"subscribe refused: {reason}"))
            return
        self._subscriptions += 1
        self._check_ready()

    def _check_ready(self) -> None:
        if self._authenticated and self._subscriptions >= len(TOPICS) and not self.ready.done():
            self.ready.set_result(None)

    def _closed(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection closed: {reason}"))
        if self._gateway.current_link is self:  # a closing old connection wakes nobody
            self._gateway.wakeup.set()

    def alive(self) -> bool:
        stream = self.stream
        return not self.closed.is_set() and stream is not None and stream.open()

    def silent_for(self) -> float:
        stream = self.stream
        return time.monotonic() - stream.last_activity if stream is not None else 0.0


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen; it is reported where it matters."""
    if not future.cancelled():
        future.exception()


def _ignore(message: Any) -> None:
    """pybit wants a callback per topic; frames reach the gateway through the listener."""


class Gateway:
    """Forwards one Bybit account's private stream through ``context.publish``
    (``ws-gateway.order``); a :class:`~om_plugins.StreamGateway`."""

    def __init__(self, config: GatewayConfig, context: GatewayContext) -> None:
        self.config = config
        self.context = context
        self.queue = QUEUE
        #: Set on stop; socket threads waiting for queue space check it.
        self.stopping = threading.Event()
        #: Set when something needs the supervisor's attention now.
        self.wakeup = asyncio.Event()
        self.inbox: _Inbox
        #: Established connections so far (each announced with ``gateway.reconnected``).
        self.connections = 0
        self.auth_failures = 0
        self.published = 0
        self.connected = asyncio.Event()
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ws-gateway")
        #: The connection being opened or in use.
        self.current_link: _Link | None = None
        self._stop_requested = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._supervisor is not None:
            raise RuntimeError("the gateway is already started")
        loop = asyncio.get_running_loop()
        self.inbox = _Inbox(self.config.queue_size, loop)
        log.info(
            "ws-gateway: forwarding account %r's private stream (%s) to %s",
            self.config.account,
            self.config.ws_url,
            self.queue,
        )
        self._publisher = asyncio.create_task(self._publish_loop(), name="ws-gateway-publish")
        self._supervisor = asyncio.create_task(self._supervise(), name="ws-gateway-supervise")

    async def stop(self) -> None:
        """Disconnect, give queued messages ``drain_grace`` seconds to be published, stop."""
        self.stopping.set()
        self._stop_requested.set()
        self.wakeup.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(self.inbox.drained(), timeout=self.config.drain_grace)
            except TimeoutError:
                pass
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
        left = len(self.inbox) if self._supervisor is not None else 0
        if left:
            log.error(
                "ws-gateway: stopped with %d message(s) not published; the Order Manager "
                "reconciles them on the next gateway.reconnected",
                left,
            )
        self._threads.shutdown(wait=False)

    # -- supervision ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.config.backoff_initial
        while not self.stopping.is_set():
            try:
                link = await self._connect()
            except _AuthFailed as exc:
                self.auth_failures += 1
                log.error(
                    "ws-gateway: Bybit refused the API key of account %r (%s); check "
                    "OM_BYBIT_API_KEY / OM_BYBIT_API_SECRET, the environment and the clock; "
                    "retrying in %.1fs",
                    self.config.account,
                    exc,
                    delay,
                )
            except Exception as exc:
                log.warning(
                    "ws-gateway: cannot connect to %s (%s); retrying in %.1fs",
                    self.config.ws_url,
                    exc,
                    delay,
                )
            else:
                self.connections += 1
                self.connected.set()
                self._announce()
                since = time.monotonic()
                try:
                    reason = await self._watch(link)
                finally:
                    self.connected.clear()
                    await self._close(link)
                if self.stopping.is_set():
                    return
                log.warning("ws-gateway: stream lost (%s); reconnecting", reason)
                if time.monotonic() - since >= STABLE_AFTER:
                    # Reconnect at once after a healthy connection: the gap is where
                    # messages are lost. A connection that keeps dropping backs off.
                    delay = self.config.backoff_initial
                    continue
            await self._pause(delay)
            delay = min(delay * 2, self.config.backoff_max)

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        link = _Link(self, loop)
        self.current_link = link
        opening = loop.run_in_executor(self._threads, self._open, link)
        opening.add_done_callback(_retrieve)
        timeout = self.config.connect_timeout
        try:
            await asyncio.wait(
                {opening, link.ready}, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION
            )
            # An auth refusal says more than the failure of the send that followed it.
            if link.ready.done() and link.ready.exception() is not None:
                raise link.ready.exception()  # type: ignore[misc]
            if not (opening.done() and link.ready.done()):
                raise ConnectionError(
                    f"not connected, authenticated and subscribed within {timeout}s"
                )
            await opening
        except BaseException:
            await self._close(link)
            raise
        return link

    def _open(self, link: _Link) -> None:
        """Connect, authenticate and subscribe (blocking; runs on a worker thread)."""
        config = self.config
        stream = PrivateStream(
            config.ws_url,
            link,
            testnet=config.testnet,
            demo=config.demo,
            api_key=config.api_key,
            api_secret=config.api_secret.get_secret_value(),
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            # pybit counts down before checking: 2 is one attempt (1 always fails).
            retries=2,
            private_auth_expire=config.auth_expire,
        )
        stream.order_stream(_ignore)
        stream.execution_stream(_ignore)

    async def _watch(self, link: _Link) -> str:
        """Return why the connection is no longer usable (or on stop)."""
        while not self.stopping.is_set():
            self.wakeup.clear()
            if link.closed.is_set():
                return link.close_reason or "closed"
            if not link.alive():
                return "socket closed"
            silent = link.silent_for()
            if silent > self.config.stale_after:
                return f"no frame or pong for {silent:.0f}s"
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout=1.0)
            except TimeoutError:
                pass
        return "stopping"

    async def _close(self, link: _Link) -> None:
        stream = link.stream
        if self.current_link is link:
            self.current_link = None
        if stream is None:
            return
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(self._threads, stream.abandon)
        closing.add_done_callback(_retrieve)
        try:
            await asyncio.wait_for(asyncio.shield(closing), timeout=5.0)
        except TimeoutError:
            log.warning("ws-gateway: the old connection is slow to close; leaving it behind")

    async def _pause(self, delay: float) -> None:
        # Jitter keeps several gateways from reconnecting in lockstep.
        wait = delay * random.uniform(0.8, 1.2)
        try:
            await asyncio.wait_for(self._stop_requested.wait(), timeout=wait)
        except TimeoutError:
            pass

    def _announce(self) -> None:
        log.info(
            "ws-gateway: connected to %s for account %r (connection %d)",
            self.config.ws_url,
            self.config.account,
            self.connections,
        )
        self.inbox.put(
            _Outgoing(
                body=control_message(RECONNECTED, account=self.config.account, at=_now_iso()),
                message_id=uuid.uuid4().hex,
                type=RECONNECTED,
            )
        )

    # -- publishing ----------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        delay = 0.1
        while True:
            item = await self.inbox.peek()
            try:
                await self.context.publish(item.body, item.message_id, item.type)
            except Exception as exc:
                log.error(
                    "ws-gateway: publishing a %s message to %s failed (%s); %d waiting, "
                    "retrying in %.1fs",
                    item.type,
                    self.queue,
                    exc,
                    len(self.inbox),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.inbox.pop()
            self.published += 1
            delay = 0.1
