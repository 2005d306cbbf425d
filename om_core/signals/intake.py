"""Signals sent over HTTP (``POST /api/v1/signals``, the console's signal form) join the very
queue a model service publishes to.

Not a second pipeline: the body is validated with the queue consumer's own contract
(:func:`om_core.signals.contract.parse_signal`), then published unchanged to
``model-service.trading_signals`` on the service's bus (in-process or RabbitMQ, with the
broker's confirm), so the same consumer, batching, de-duplication and plugins decide it.

Idempotent on ``signal_id``: a signal whose id the service has stored (placed, rejected, or
still processing) is answered with what is stored and not published again; nor is one this
process queued moments ago and the consumer has not stored yet. Two submissions racing past
both checks reach the queue twice, where the consumer's de-duplication makes the second one
change nothing. A known id with other content is refused (:class:`SignalIdConflict`, with a
``signal.rejected`` event ``SIGNAL_ID_CONFLICT``), exactly as the consumer refuses such a copy:
the first stored copy wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from om_core.db.models import SignalRecord
from om_core.db.session import SessionFactory
from om_core.events.live import LiveFeed
from om_core.events.payloads import reasons_payload
from om_core.messaging.base import MessageBus
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.signals.contract import DEFAULT_LIMITS, SignalLimits, parse_message
from om_core.signals.store import SignalStatus, conflict_reason, json_safe, stage_rejections
from om_plugins.types import Rejection

__all__ = [
    "QUEUED",
    "SOURCE_HEADER",
    "SUBMITTED_BY_HEADER",
    "SignalIdConflict",
    "SignalIntake",
    "Submission",
]

log = logging.getLogger(__name__)

#: The status of a signal published to the queue and not yet stored by the consumer.
QUEUED = "queued"
SOURCE_HEADER = "x-om-source"
SUBMITTED_BY_HEADER = "x-om-submitted-by"
#: How many recently queued ids are remembered (to answer a quick repeat without a publish).
_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class Submission:
    signal_id: str
    #: ``queued`` when published now (or moments ago); else the stored status.
    status: str
    #: True when the signal was known and nothing was published.
    duplicate: bool
    #: The stored signal, when there is one.
    record: SignalRecord | None = None


class SignalIdConflict(Exception):
    """The signal id is known with other content; the first stored copy wins."""

    def __init__(self, signal_id: str, reason: Rejection) -> None:
        super().__init__(reason.message)
        self.signal_id = signal_id
        self.reason = reason


class SignalIntake:
    def __init__(
        self,
        sessions: SessionFactory,
        bus: MessageBus,
        live: LiveFeed,
        limits: SignalLimits = DEFAULT_LIMITS,
        *,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._live = live
        self.limits = limits
        self._on_committed = on_committed
        #: Signal id → digest of the content queued under it.
        self._queued: OrderedDict[str, str] = OrderedDict()

    async def submit(self, body: bytes, *, source: str, actor: str) -> Submission:
        """Validate ``body`` as a signal and queue it, once.

        Raises :class:`~om_core.signals.contract.InvalidSignal` (every problem listed;
        :class:`~om_core.signals.contract.MessageTooLarge` for a body over the size limit),
        :class:`SignalIdConflict` (the id is known with other content), or
        :class:`~om_core.messaging.base.PublishError` (the broker did not confirm it; nothing
        is known to be queued, and a retry with the same ``signal_id`` is safe).
        """
        signal, data = parse_message(body, self.limits)
        signal_id = signal.signal_id
        content = json_safe(data)
        digest = _digest(content)
        if signal_id in self._queued:
            record = await self._stored(signal_id)
            if record is None or record.status != SignalStatus.DEAD_LETTERED:
                if record is not None:
                    await self._check_same(signal_id, record.payload, content)
                elif self._queued[signal_id] != digest:
                    # Its content is known here by digest only: which fields differ is not.
                    await self._check_same(signal_id, None, None)
                return Submission(signal_id, record.status if record else QUEUED, True, record)
        # Remembered before the first await: a concurrent repeat sees it.
        self._remember(signal_id, digest)
        try:
            record = await self._stored(signal_id)
            # A dead-lettered id was malformed before; a valid signal under it starts over.
            if record is not None and record.status != SignalStatus.DEAD_LETTERED:
                await self._check_same(signal_id, record.payload, content)
                return Submission(signal_id, record.status, True, record)
            await self._bus.publish(
                SIGNALS_QUEUE,
                body,
                message_id=signal_id,
                headers={SOURCE_HEADER: source, SUBMITTED_BY_HEADER: actor},
            )
        except BaseException:
            self._queued.pop(signal_id, None)
            raise
        self._live.publish("signal_accepted", _summary(signal_id, data))
        return Submission(signal_id, QUEUED, False)

    async def _check_same(self, signal_id: str, stored: Any, content: Any) -> None:
        reason = conflict_reason(stored, content)
        if reason is not None:
            await self._conflict(signal_id, reason)

    async def _conflict(self, signal_id: str, reason: Rejection) -> None:
        """Refuse a copy whose content differs from the first: event, warning, exception."""
        log.warning(
            "signal %s submitted again with other content (differs in %s): rejected "
            "SIGNAL_ID_CONFLICT, the first copy wins",
            signal_id,
            reason.details["fields"],
        )
        async with self._sessions() as session, session.begin():
            conn = await session.connection()
            await stage_rejections(conn, [(signal_id, reasons_payload([reason]))])
        self._on_committed()
        raise SignalIdConflict(signal_id, reason)

    def _remember(self, signal_id: str, digest: str) -> None:
        self._queued[signal_id] = digest
        self._queued.move_to_end(signal_id)
        while len(self._queued) > _REMEMBERED:
            self._queued.popitem(last=False)

    async def _stored(self, signal_id: str) -> SignalRecord | None:
        async with self._sessions() as session:
            query = select(SignalRecord).where(col(SignalRecord.signal_id) == signal_id)
            return (await session.exec(query)).one_or_none()


def _digest(content: Any) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _summary(signal_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "signal_id": signal_id,
        "symbol": str(data.get("symbol", "")).upper(),
        "side": str(data.get("side", "")).lower(),
    }
