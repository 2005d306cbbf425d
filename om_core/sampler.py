"""The last hour of the service's own metrics, sampled in memory for the console's charts.

Every ``interval`` seconds one sample is taken from what the service already keeps: the
Prometheus counters and histograms the engine updates (signals by outcome, placement latency,
exchange errors by code, rate-limit headroom), the outbox backlog and pending dead letters in
the database, the dead-letter queues' depth on the broker, and realized and unrealized PnL
per symbol. Rates and latency quantiles are computed over the interval, from the counters'
growth (quantiles by linear interpolation inside histogram buckets, as Prometheus'
``histogram_quantile`` does). Nothing is stored: a restart starts an empty hour.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import func
from sqlmodel import col, select

from om_core import metrics
from om_core.db.models import DeadLetterRecord, OutboxEvent, Position
from om_core.db.session import SessionFactory
from om_core.messaging.base import MessageBus, dlq_name
from om_core.messaging.topology import CONSUMED_QUEUES
from om_core.periodic import Every
from om_core.positions.math import PositionState, unrealized_pnl
from om_plugins.exchange import ExchangeAdapter
from om_plugins.types import Category

__all__ = ["CHARTS", "Sampler"]

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600.0
_PRICE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str


#: Chart name → what it shows; every sample has a value (or ``None``) per label of each.
CHARTS: dict[str, Chart] = {
    "signals": Chart("Signals per second by outcome", "signals/s"),
    "placement_latency": Chart("Placement latency (signal received → exchange accepted)", "ms"),
    "exchange_errors": Chart("Exchange errors by code (per interval)", "errors"),
    "rate_limit_headroom": Chart("Rate-limit headroom", "requests left"),
    "outbox_backlog": Chart("Outbox backlog", "events"),
    "dead_letters": Chart("Dead letters", "messages"),
    "realized_pnl": Chart("Realized PnL per symbol", "quote coin"),
    "unrealized_pnl": Chart("Unrealized PnL per symbol", "quote coin"),
}

Values = dict[str, dict[str, float | None]]


@dataclass(frozen=True, slots=True)
class _Counters:
    """The cumulative figures of one sample, to compute the next one's rates from."""

    signals: dict[str, float]
    errors: dict[str, float]
    latency: list[tuple[float, float]]


def _samples(metric: MetricWrapperBase) -> Iterable[Any]:
    for family in metric.collect():
        yield from family.samples


def _counter_by(metric: MetricWrapperBase, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for sample in _samples(metric):
        if sample.name.endswith("_total"):
            key = sample.labels.get(label, "")
            out[key] = out.get(key, 0.0) + sample.value
    return out


def _buckets(metric: MetricWrapperBase) -> list[tuple[float, float]]:
    """``(upper bound, cumulative count)`` of a histogram without labels."""
    out = []
    for sample in _samples(metric):
        if sample.name.endswith("_bucket"):
            out.append((float(sample.labels["le"]), sample.value))
    return sorted(out)


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``buckets``; ``None`` without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # above the largest finite bucket: its bound, at least
            width = count - lower_count
            share = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return buckets[-1][0]


def _delta(
    now: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    previous = dict(before)
    return [(bound, count - previous.get(bound, 0.0)) for bound, count in now]


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class Sampler:
    def __init__(
        self,
        sessions: SessionFactory,
        bus: MessageBus,
        exchange: ExchangeAdapter,
        *,
        interval: float = 5.0,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self.interval = interval
        self._sessions = sessions
        self._bus = bus
        self._exchange = exchange
        self._samples: deque[tuple[float, Values]] = deque(
            maxlen=max(int(window / interval), 1) if interval > 0 else 1
        )
        self._previous: _Counters | None = None
        self._previous_at = 0.0
        self._loop = Every(interval, self.sample, name="metrics-sampler")
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def sample(self) -> None:
        """Take one sample now (the loop calls this every ``interval``)."""
        async with self._lock:
            now = time.time()
            counters = _Counters(
                signals=_counter_by(metrics.SIGNALS, "outcome"),
                errors=_counter_by(metrics.EXCHANGE_ERRORS, "code"),
                latency=_buckets(metrics.PLACEMENT_LATENCY),
            )
            values: Values = {name: {} for name in CHARTS}
            previous, elapsed = self._previous, now - self._previous_at
            if previous is not None and elapsed > 0:
                for outcome, count in counters.signals.items():
                    grown = count - previous.signals.get(outcome, 0.0)
                    values["signals"][outcome] = round(grown / elapsed, 3)
                for code, count in counters.errors.items():
                    values["exchange_errors"][code] = count - previous.errors.get(code, 0.0)
                window = _delta(counters.latency, previous.latency)
                for name, q in (("p50", 0.5), ("p99", 0.99)):
                    seconds = bucket_quantile(q, window)
                    values["placement_latency"][name] = (
                        None if seconds is None else round(seconds * 1000, 3)
                    )
            else:
                values["placement_latency"] = {"p50": None, "p99": None}
            for sample in _samples(metrics.RATE_LIMIT_HEADROOM):
                values["rate_limit_headroom"][sample.labels.get("group", "")] = sample.value
            self._previous, self._previous_at = counters, now
            await self._read_state(values)
            self._samples.append((now, values))

    async def _read_state(self, values: Values) -> None:
        try:
            async with self._sessions() as session:
                unsent = (
                    await session.exec(
                        select(func.count()).where(col(OutboxEvent.sent_at).is_(None))
                    )
                ).one()
                pending = (
                    await session.exec(
                        select(func.count()).where(col(DeadLetterRecord.state) == "pending")
                    )
                ).one()
                positions = (await session.exec(select(Position))).all()
            values["outbox_backlog"]["unsent"] = float(unsent)
            values["dead_letters"]["pending in table"] = float(pending)
        except Exception:
            log.warning("metrics sampler: could not read the database", exc_info=True)
            positions = []
        for queue in CONSUMED_QUEUES:
            try:
                depth = await self._bus.message_count(dlq_name(queue))
            except Exception:
                log.warning("metrics sampler: could not read %s", dlq_name(queue), exc_info=True)
                continue
            values["dead_letters"][dlq_name(queue)] = float(depth)
        realized: dict[str, Decimal] = {}
        unrealized: dict[str, Decimal | None] = {}
        for row in positions:
            realized[row.symbol] = realized.get(row.symbol, Decimal(0)) + row.realized_pnl
            if row.size == 0:
                unrealized.setdefault(row.symbol, Decimal(0))
                continue
            mark = row.mark_price if row.mark_price is not None else await self._price(row)
            if mark is None:
                unrealized[row.symbol] = None
                continue
            state = PositionState(row.size, row.avg_entry_price, row.realized_pnl, row.fees_paid)
            pnl = unrealized_pnl(state, mark, inverse=row.category == Category.INVERSE.value)
            known = unrealized.get(row.symbol, Decimal(0))
            unrealized[row.symbol] = None if known is None else known + pnl
        values["realized_pnl"] = {s: _number(v) for s, v in realized.items()}
        values["unrealized_pnl"] = {s: _number(v) for s, v in unrealized.items()}

    async def _price(self, row: Position) -> Decimal | None:
        try:
            return await asyncio.wait_for(
                self._exchange.get_reference_price(Category(row.category), row.symbol),
                _PRICE_TIMEOUT,
            )
        except Exception as exc:
            log.debug("metrics sampler: no price for %s: %s", row.symbol, exc)
            return None

    def series(self) -> dict[str, Any]:
        """Every chart's series over the window, aligned on the sample times (for uPlot)."""
        times = [round(t, 3) for t, _ in self._samples]
        charts: dict[str, Any] = {}
        for name, chart in CHARTS.items():
            labels: list[str] = []
            for _, values in self._samples:
                for label in values.get(name, {}):
                    if label not in labels:
                        labels.append(label)
            labels.sort()
            charts[name] = {
                "title": chart.title,
                "unit": chart.unit,
                "labels": labels,
                "values": [
                    [values.get(name, {}).get(label) for _, values in self._samples]
                    for label in labels
                ],
            }
        return {
            "interval": self.interval,
            "window": WINDOW_SECONDS,
            "times": times,
            "charts": charts,
        }
