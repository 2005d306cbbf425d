"""SignalConsumer: the bus handler for ``model-service.trading_signals``.

Bad messages are dead-lettered with their reason; transient failures (database or exchange
unreachable) are retried with backoff while the message is held, so a signal is acked only
once its outcome is durable, and never lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from om_core import faults, metrics
from om_core.db.session import SessionFactory
from om_core.db.types import utcnow
from om_core.engine.processor import Incoming, SignalOutcome, SignalProcessor
from om_core.messaging.base import DeadLetter, Message
from om_core.signals import store
from om_core.signals.contract import (
    DEFAULT_LIMITS,
    InvalidSignal,
    SignalLimits,
    parse_message,
)
from om_plugins.errors import ExchangeUnavailable, OutcomeUnknown
from om_plugins.types import Signal

__all__ = ["SignalConsumer", "is_transient", "retry_transient"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_CONFLICT_RETRIES = 3
_SCHEMA_ERRORS = re.compile(r"no such (table|column)|syntax error|has no column", re.I)


def is_transient(exc: BaseException) -> bool:
    """Failures worth retrying the same message for: the world, not the message, is broken."""
    if isinstance(exc, IntegrityError):
        return True  # a concurrent duplicate won the insert race; the retry sees its row
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError) and _SCHEMA_ERRORS.search(str(exc.orig)):
        return False  # SQLite reports a wrong schema as "operational"; retrying cannot help
    return isinstance(
        exc,
        OperationalError
        | InterfaceError
        | ConnectionError
        | OSError
        | TimeoutError
        | ExchangeUnavailable
        | OutcomeUnknown,
    )


async def retry_transient(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    initial: float = 0.2,
    maximum: float = 5.0,
) -> T:
    """Run ``action`` until it succeeds or fails for a non-transient reason.

    A uniqueness conflict is retried only a few times: the retry sees the row that won the
    race; a conflict that persists is a bug, and must surface rather than hold the message.
    """
    delay = initial
    conflicts = 0
    while True:
        try:
            return await action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if isinstance(exc, IntegrityError):
                conflicts += 1
                if conflicts > _MAX_CONFLICT_RETRIES:
                    raise
            log.warning("%s failed transiently (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, maximum)


class SignalConsumer:
    def __init__(
        self,
        factory: SessionFactory,
        processor: SignalProcessor,
        limits: SignalLimits = DEFAULT_LIMITS,
    ) -> None:
        self._factory = factory
        self._processor = processor
        self._limits = limits

    async def handle(self, message: Message) -> None:
        faults.checkpoint("signal.received")
        await self._process(await self._parse(message.body, message.timestamp))

    async def handle_batch(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """Signals that arrived together, decided in one transaction when possible.

        Returns, per message, ``None`` or the exception :meth:`handle` would have raised: a
        batch that fails for any reason but a transient one is processed again message by
        message, so one bad signal costs only its own message.
        """
        outcomes: list[BaseException | None] = [None] * len(messages)
        valid: list[tuple[int, Incoming]] = []
        for index, message in enumerate(messages):
            faults.checkpoint("signal.received")
            try:
                valid.append((index, await self._parse(message.body, message.timestamp)))
            except Exception as exc:
                outcomes[index] = exc
        if len(valid) > 1:
            batch = [incoming for _, incoming in valid]
            try:
                results = await retry_transient(
                    lambda: self._processor.process_many(batch),
                    what=f"processing a batch of {len(batch)} signals",
                )
            except Exception:
                log.warning(
                    "a batch of %d signals failed; processing them one at a time",
                    len(batch),
                    exc_info=True,
                )
            else:
                for incoming, outcome in zip(batch, results, strict=True):
                    _report(incoming.signal, outcome)
                return outcomes
        for index, incoming in valid:
            try:
                await self._process(incoming)
            except Exception as exc:
                outcomes[index] = exc
        return outcomes

    async def process_bytes(self, body: bytes) -> SignalOutcome:
        return await self._process(await self._parse(body))

    async def _parse(self, body: bytes, sent_at: datetime | None = None) -> Incoming:
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
                await retry_transient(
                    lambda: self._record_dead_letter(signal_id, problems, payload, code),
                    what=f"recording dead-lettered signal {signal_id}",
                )
            log.warning("dead-lettering signal %s: %s", signal_id or "<no id>", exc)
            metrics.count_signal("dead_lettered")
            raise DeadLetter(f"invalid signal: {exc}") from None

    async def _process(self, incoming: Incoming) -> SignalOutcome:
        signal = incoming.signal
        (outcome,) = await retry_transient(
            lambda: self._processor.process_many([incoming]),
            what=f"processing signal {signal.signal_id}",
        )
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
