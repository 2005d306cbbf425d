"""What every fault scenario shares: a Bybit fake that keeps a per-order timeline, the
service as a subprocess, an event collector, and the audit that counts what went wrong.

The audit is Jepsen-style: it does not stop at the first problem, it counts every kind of
loss and duplication over the whole history, so a report says *how much* went wrong where.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlmodel import col, select

from om_core.db.models import Fill, Order, OutboxEvent, Position, SignalRecord
from om_core.db.session import SessionFactory, create_engine, create_session_factory
from om_core.messaging.base import Consumer, Message
from om_core.messaging.rabbitmq import RabbitBus
from om_core.messaging.topology import ORDER_EVENTS_QUEUE
from om_core.orders.client_id import client_order_id
from om_core.orders.status import IN_DOUBT
from tests.events_schema import validate_event
from tests.fake_bybit import FakeBybit

API_KEY = "faults-key"
API_SECRET = "faults-secret"
#: Definitive "not found" lookups the executor needs before it may send an order again.
MISSES_BEFORE_RESEND = 3
FINAL = ("placed", "rejected")


# -- the exchange ---------------------------------------------------------------------------


class RecordingFakeBybit(FakeBybit):
    """FakeBybit that also keeps, per ``orderLinkId``, what was asked in what order:

    * ``create`` — a create while the exchange had no such order;
    * ``create-existing`` — a create while it already had one (a blind re-send: the exchange
      refuses it, but the protocol must never send it);
    * ``miss`` — a lookup that found nothing (the order-history step of a lookup for an order
      the exchange does not have);
    * ``refused`` — a create the rate limit (10006) or an IP ban (HTTP 403/429) turned away
      before processing it: sending it again needs no lookup.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(api_key=API_KEY, api_secret=API_SECRET, **kwargs)
        self.timeline: dict[str, list[str]] = defaultdict(list)

    async def _serve(self, request: web.Request, path: str) -> web.StreamResponse:
        if request.method == "POST" and path == "/v5/order/create":
            try:
                link = json.loads(await request.read()).get("orderLinkId")
            except (ValueError, AttributeError):
                link = None
            if not (isinstance(link, str) and link):
                return await super()._serve(request, path)
            # Recorded before serving: a create the client gave up on (a timeout) may never
            # finish here, as its handler is cancelled when the client disconnects.
            steps = self.timeline[link]
            steps.append("create-existing" if link in self.orders else "create")
            at = len(steps) - 1
            response = await super()._serve(request, path)
            if _throttled(response):
                # The rate limit or an IP ban refused it unprocessed: sending it again at once
                # is what the protocol does (ExchangeUnavailable), no lookup needed.
                steps[at] = "refused"
            return response
        if request.method == "GET" and path == "/v5/order/history":
            link = request.query.get("orderLinkId")
            if link and link not in self.orders:
                self.timeline[link].append("miss")
        return await super()._serve(request, path)


def _throttled(response: web.StreamResponse) -> bool:
    if response.status in (403, 429):
        return True
    body = getattr(response, "body", None)
    if not isinstance(body, bytes | bytearray):
        return False
    try:
        return bool(json.loads(body).get("retCode") == 10006)
    except (ValueError, AttributeError):
        return False


def bybit_env(fake: FakeBybit) -> dict[str, str]:
    return {
        "OM_EXCHANGE": "bybit",
        "OM_BYBIT_API_KEY": API_KEY,
        "OM_BYBIT_API_SECRET": API_SECRET,
        "OM_BYBIT_BASE_URL": fake.http_url,
        "OM_BYBIT_WS_URL": fake.ws_private_url,
        "OM_BYBIT_LINEAR_SETTLE_COINS": "USDT",
        # The resend guard is recv window + 5 s: the smallest window keeps lost-order
        # recovery at ~6 s.
        "OM_BYBIT_RECV_WINDOW_MS": "1000",
        "OM_BYBIT_REQUEST_TIMEOUT_S": "2",
    }


# -- signals --------------------------------------------------------------------------------

#: (symbol, qty): market orders the fake fills at once, small enough for a long run.
LEGS = (("BTCUSDT", "0.001"), ("ETHUSDT", "0.01"), ("SOLUSDT", "0.1"))


def market_signal(signal_id: str, n: int) -> dict[str, Any]:
    """The n-th signal of a run: symbols rotate, sides alternate so positions stay small."""
    symbol, qty = LEGS[n % len(LEGS)]
    side = "buy" if (n // len(LEGS)) % 2 == 0 else "sell"
    return {"signal_id": signal_id, "symbol": symbol, "side": side, "qty": qty}


def encode(signal: Mapping[str, Any]) -> bytes:
    return json.dumps(signal).encode()


# -- the service as a process ---------------------------------------------------------------

BANNER = "Order Manager is running"


class ServiceProcess:
    """``python -m om_core.cli run`` with its own environment and log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
        self.env = {**base, "PYTHONUNBUFFERED": "1", **env}
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "om_core.cli",
                "run",
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        return self

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def is_up(self) -> bool:
        return BANNER in self.log(tail=10**7)

    async def exited(self, timeout: float) -> int | None:
        """The exit code once the process ended within ``timeout``, else ``None``."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop within ``timeout``."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        code = await self.exited(timeout)
        if code is None:
            self.kill()
            code = await self.proc.wait()
        return code


# -- events ---------------------------------------------------------------------------------


class EventCollector:
    """Consumes ``order-manager.order_events`` for the whole run, as a downstream service
    would; every event is checked against the schema and its AMQP properties."""

    def __init__(self, bus: RabbitBus) -> None:
        self._bus = bus
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self._consumer: Consumer | None = None

    async def start(self) -> EventCollector:
        self._consumer = await self._bus.consume(ORDER_EVENTS_QUEUE, self._on_event, prefetch=200)
        return self

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop(5)
            self._consumer = None

    async def _on_event(self, message: Message) -> None:
        event = json.loads(message.body)
        try:
            validate_event(event)
        except AssertionError as exc:
            self.problems.append(str(exc))
        if message.message_id != event.get("event_id"):
            self.problems.append(f"message_id {message.message_id} != {event.get('event_id')}")
        self.events.append(event)

    def by_order(self) -> dict[str, dict[str, set[str]]]:
        """client_order_id → event_type → distinct event ids (de-duplicated by event_id)."""
        out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for event in self.events:
            order = event.get("order") or {}
            link = order.get("client_order_id")
            if link:
                out[link][event["event_type"]].add(event["event_id"])
        return out


# -- the database -----------------------------------------------------------------------------


class Db:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.sessions: SessionFactory = create_session_factory(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def all(self, model: Any) -> list[Any]:
        async with self.sessions() as session:
            return list((await session.exec(select(model))).all())

    async def signals(self, ids: Iterable[str]) -> dict[str, SignalRecord]:
        wanted = list(ids)
        async with self.sessions() as session:
            rows = await session.exec(
                select(SignalRecord).where(col(SignalRecord.signal_id).in_(wanted))
            )
            return {r.signal_id: r for r in rows.all()}

    async def settled(self, ids: Iterable[str], *, filled: bool = True) -> bool:
        """Every signal decided, nothing in doubt, every order filled (when the run only
        places market orders), the outbox empty."""
        wanted = list(ids)
        rows = await self.signals(wanted)
        if len(rows) < len(wanted) or any(r.status not in FINAL for r in rows.values()):
            return False
        async with self.sessions() as session:
            orders = (
                await session.exec(select(Order).where(col(Order.signal_id).in_(wanted)))
            ).all()
            unsent = (
                await session.exec(select(OutboxEvent.id).where(col(OutboxEvent.sent_at).is_(None)))
            ).first()
        if unsent is not None or any(o.status in IN_DOUBT for o in orders):
            return False
        return not filled or all(o.status == "filled" for o in orders if o.signal_id)


async def await_true(condition: Any, *, timeout: float, interval: float = 0.1) -> bool:
    """Like ``tests.conftest.wait_for`` but answers False at the deadline instead of failing:
    the audit then counts what is missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await condition():
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval)


# -- the audit --------------------------------------------------------------------------------


@dataclass
class Tally:
    signals_lost: int = 0
    signals_duplicated: int = 0
    orders_lost: int = 0
    orders_duplicated: int = 0
    events_lost: int = 0
    events_duplicated: int = 0
    fills_wrong: int = 0
    positions_wrong: int = 0
    problems: list[str] = field(default_factory=list)

    COUNTS = (
        "signals_lost",
        "signals_duplicated",
        "orders_lost",
        "orders_duplicated",
        "events_lost",
        "events_duplicated",
        "fills_wrong",
        "positions_wrong",
    )

    def add(self, kind: str, problem: str, n: int = 1) -> None:
        setattr(self, kind, getattr(self, kind) + n)
        self.problems.append(f"{kind}: {problem}")

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.COUNTS}

    def clean(self) -> bool:
        return not any(self.counts().values())

    def __iadd__(self, other: Tally) -> Tally:
        for k in self.COUNTS:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.problems.extend(other.problems)
        return self

    def report(self, limit: int = 40) -> str:
        lines = [f"{k}={v}" for k, v in self.counts().items()]
        return ", ".join(lines) + "\n" + "\n".join(self.problems[:limit])


def audit_resends(fake: RecordingFakeBybit, links: Iterable[str], tally: Tally) -> None:
    """A create may be repeated only for an order the exchange does not have, and only after
    ``MISSES_BEFORE_RESEND`` lookups that found nothing (docs/exactly-once.md, rule 5)."""
    for link in links:
        misses = 0
        creates = 0
        for step in fake.timeline.get(link, []):
            if step == "miss":
                misses += 1
                continue
            if step == "refused":
                continue
            if step == "create-existing":
                tally.add("orders_duplicated", f"{link}: created again while it existed")
            elif creates and misses < MISSES_BEFORE_RESEND:
                tally.add("orders_duplicated", f"{link}: re-sent after only {misses} lookups")
            creates += 1
            misses = 0


async def audit(
    db: Db,
    fake: RecordingFakeBybit,
    events: EventCollector,
    signal_ids: Iterable[str],
    *,
    expect_filled: bool = True,
    check_positions: bool = True,
    at_most: Mapping[str, int] | None = None,
) -> Tally:
    """Count every loss and duplication for ``signal_ids`` (all expected to be placed).

    Each order must have one ``order.created`` and, when filled, one ``order.filled`` event
    (distinct event ids); ``at_most`` allows other event types up to a count each.
    """
    tally = Tally()
    wanted = list(signal_ids)
    rows = await db.signals(wanted)
    orders = [o for o in await db.all(Order) if o.signal_id in set(wanted)]
    fills = await db.all(Fill)
    by_signal: dict[str, list[Order]] = defaultdict(list)
    for order in orders:
        assert order.signal_id is not None
        by_signal[order.signal_id].append(order)

    for sid in wanted:
        row = rows.get(sid)
        if row is None or row.status not in FINAL:
            tally.add("signals_lost", f"{sid}: {row.status if row else 'no row'}")
        elif row.status != "placed":
            tally.add("signals_lost", f"{sid}: {row.status} {row.reasons}")
        mine = by_signal.get(sid, [])
        if len(mine) > 1:
            tally.add("signals_duplicated", f"{sid}: {len(mine)} orders", len(mine) - 1)

    # The exchange's side: one order per signal, ours, and nothing else.
    known_links = {o.client_order_id for o in await db.all(Order)}
    expected_links = {client_order_id(sid, 0): sid for sid in wanted}
    for link in fake.orders:
        if link not in known_links:
            tally.add("orders_duplicated", f"exchange order {link} is unknown to the service")
    per_link = Counter(o.order_link_id for o in fake.exchange.orders_by_id.values())
    for link, n in per_link.items():
        if link and n > 1:
            tally.add("orders_duplicated", f"{link}: {n} exchange orders", n - 1)
    for link, sid in expected_links.items():
        on_exchange = fake.orders.get(link)
        ours = [o for o in by_signal.get(sid, []) if o.client_order_id == link]
        if on_exchange is None:
            tally.add("orders_lost", f"{sid}: no order on the exchange")
            continue
        if not ours:
            tally.add("orders_lost", f"{sid}: the exchange has {link}, the service does not")
            continue
        order = ours[0]
        if order.exchange_order_id != on_exchange.order_id:
            tally.add("orders_lost", f"{sid}: exchange id {order.exchange_order_id} is wrong")
        if order.filled_qty != on_exchange.cum_exec_qty:
            tally.add(
                "fills_wrong",
                f"{sid}: filled {order.filled_qty}, exchange {on_exchange.cum_exec_qty}",
            )
        counted = sum((f.qty for f in fills if f.order_id == order.id), Decimal(0))
        if counted != order.filled_qty:
            tally.add("fills_wrong", f"{sid}: fills add up to {counted}, not {order.filled_qty}")
    audit_resends(fake, expected_links, tally)

    # Events, de-duplicated by event_id: one per real change.
    seen = events.by_order()
    for link, sid in expected_links.items():
        ours = [o for o in by_signal.get(sid, []) if o.client_order_id == link]
        expected = {"order.created": 1}
        if ours and expected_filled(ours[0], expect_filled):
            expected["order.filled"] = 1
        got = seen.get(link, {})
        for kind, n in expected.items():
            if len(got.get(kind, ())) < n:
                tally.add("events_lost", f"{sid}: no {kind}")
        for kind, ids in got.items():
            extra = len(ids) - max(expected.get(kind, 0), (at_most or {}).get(kind, 0))
            if extra > 0:
                tally.add("events_duplicated", f"{sid}: {len(ids)} distinct {kind}", extra)
    for problem in events.problems:
        tally.add("events_duplicated", f"malformed event: {problem}")

    if check_positions:
        await audit_positions(db, fake, tally)
    return tally


def expected_filled(order: Order, expect_filled: bool) -> bool:
    return expect_filled or order.status == "filled"


async def audit_positions(db: Db, fake: RecordingFakeBybit, tally: Tally) -> None:
    ours = {p.symbol: p.size for p in await db.all(Position) if p.position_idx == 0}
    theirs = {p.instrument.symbol: p.size for p in fake.exchange.positions.values()}
    for symbol in sorted(set(ours) | set(theirs)):
        a, b = ours.get(symbol, Decimal(0)), theirs.get(symbol, Decimal(0))
        if a != b:
            tally.add("positions_wrong", f"{symbol}: service {a}, exchange {b}")
