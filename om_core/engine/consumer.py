"""SignalConsumer: the bus handler for ``model-service.trading_signals``.

Bad messages are dead-lettered with their reason. Only transient failures (database, broker
or exchange unreachable, a serialization failure, a deadlock: :mod:`om_core.failures`) are
retried, with backoff while the message is held, for at most ``OM_RETRY_SECONDS``; any other
failure of one signal, or a transient one past that bound, dead-letters it at once with the
reason. So a signal is acked only once its outcome is durable, never lost, and never holds
a consumer slot for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from om_core import faults, metrics
from om_core.db.session import SessionFactory
from om_core.db.types import utcnow
from om_core.engine.processor import Incoming, SignalOutcome, SignalProcessor
from om_core.failures import (
    DEFAULT_RETRY_SECONDS,
    dead_letter,
    describe,
    retry_transient,
)
from om_core.messaging.base import ConsumerActivity, DeadLetter, Message
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.signals import store
from om_core.signals.contract import (
    DEFAULT_LIMITS,
    InvalidSignal,
    SignalLimits,
    parse_message,
)
from om_plugins.types import Signal

__all__ = ["SignalConsumer"]

log = logging.getLogger(__name__)


class SignalConsumer:
    def __init__(
        self,
        factory: SessionFactory,
        processor: SignalProcessor,
        limits: SignalLimits = DEFAULT_LIMITS,
        *,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        retries: ConsumerActivity | None = None,
        queue: str = SIGNALS_QUEUE,
    ) -> None:
        self._factory = factory
        self._processor = processor
        self._limits = limits
        self._retry_seconds = retry_seconds
        self._retries = retries
        self._queue = queue

    async def handle(self, message: Message) -> None:
        faults.checkpoint("signal.received")
        deadline = self._deadline()
        await self._process(await self._parse(message.body, deadline, message.timestamp), deadline)

    def _deadline(self) -> float:
        return time.monotonic() + self._retry_seconds

    async def handle_batch(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """Signals that arrived together, decided in one transaction when possible.

        Returns, per message, ``None`` or the exception :meth:`handle` would have raised: a
        batch that fails for any reason — also a transient one that outlasted the retry bound —
        is processed again message by message, so one bad signal costs only its own message.
        The retry bound counts from the batch's start for every message in it.
        """
        deadline = self._deadline()
        outcomes: list[BaseException | None] = [None] * len(messages)
        valid: list[tuple[int, Incoming]] = []
        for index, message in enumerate(messages):
            faults.checkpoint("signal.received")
            try:
                valid.append((index, await self._parse(message.body, deadline, message.timestamp)))
            except Exception as exc:
                outcomes[index] = exc
        if len(valid) > 1:
            batch = [incoming for _, incoming in valid]
            try:
                results = await retry_transient(
                    lambda: self._processor.process_many(batch),
                    what=f"processing a batch of {len(batch)} signals",
                    deadline=deadline,
                    tracker=self._retries,
                    queue=self._queue,
                    count=len(batch),
                )
            except Exception:
                log.warning(
                    "a batch of %d signals failed; processing them one at a time", len(batch)
                )
            else:
                for incoming, outcome in zip(batch, results, strict=True):
                    _report(incoming.signal, outcome)
                return outcomes
        for index, incoming in valid:
            try:
                await self._process(incoming, deadline)
            except Exception as exc:
                outcomes[index] = exc
        return outcomes

    async def process_bytes(self, body: bytes) -> SignalOutcome:
        deadline = self._deadline()
        return await self._process(await self._parse(body, deadline), deadline)

    async def _parse(
        self, body: bytes, deadline: float, sent_at: datetime | None = None
    ) -> Incoming:
        """The signal in ``body``; raises :class:`DeadLetter` (after recording what it can)."""
        received_at = utcnow()
        try:
            signal, data = parse_message(body, self._limits)
            return Incoming(signal, data, received_at, sent_at)
        except InvalidSignal as exc:
            signal_id = exc.signal_id
            problems, code = exc.problems, exc.code
            # What breaks a bound is not stored; the message itself is in the DLQ.
            payload = exc.payload if exc.storable else None
            if signal_id is not None:
                try:
                    await retry_transient(
                        lambda: self._record_dead_letter(signal_id, problems, payload, code),
                        what=f"recording dead-lettered signal {signal_id}",
                        deadline=deadline,
                        tracker=self._retries,
                        queue=self._queue,
                    )
                except Exception as record_error:
                    # An id the table cannot hold, or the database gone past the bound: the
                    # message is still dead-lettered, with its reason, in the queue's DLQ.
                    log.warning(
                        "could not record dead-lettered signal %r: %s",
                        signal_id[:80],
                        describe(record_error),
                    )
            log.warning("dead-lettering signal %s: %s", signal_id or "<no id>", exc)
            metrics.count_signal("dead_lettered")
            raise DeadLetter(f"invalid signal: {exc}") from None
        except Exception as exc:
            # Reading is pure: whatever else it raises is about this message (a bug the
            # contract's checks missed), never the world's.
            metrics.count_signal("dead_lettered")
            raise dead_letter(exc, "reading the signal", logger=log) from exc

    async def _process(self, incoming: Incoming, deadline: float) -> SignalOutcome:
        """Decide and place one signal; raises :class:`DeadLetter` when it failed for a
        reason that is not transient, or transiently past the retry bound."""
        signal = incoming.signal
        what = f"processing signal {signal.signal_id!r}"
        try:
            (outcome,) = await retry_transient(
                lambda: self._processor.process_many([incoming]),
                what=what,
                deadline=deadline,
                tracker=self._retries,
                queue=self._queue,
            )
        except Exception as exc:
            metrics.count_signal("dead_lettered")
            raise dead_letter(exc, what, logger=log) from exc
        _report(signal, outcome)
        return outcome

    async def _record_dead_letter(
        self, signal_id: str, problems: list[str], data: Any, code: str
    ) -> None:
        async with self._factory() as session, session.begin():
            await store.record_dead_letter(session, signal_id, problems, data, code=code)


def _report(signal: Signal, outcome: SignalOutcome) -> None:
    metrics.count_signal("duplicate" if outcome.duplicate else outcome.status)
    log.info(
        "signal %s → %s%s",
        signal.signal_id,
        outcome.status,
        " (duplicate, nothing changed)" if outcome.duplicate else "",
    )
