"""EventSubscriber: the bus handler for ``ws-gateway.order``.

The configured exchange plugin decodes each message into neutral reports
(``ExchangeAdapter.decode_stream``); the engine checks they fit its tables and applies them.
Only transient failures are retried (:mod:`om_core.failures`), for at most
``OM_RETRY_SECONDS``; any other failure of one message, or a transient one past the bound,
dead-letters that message at once with the reason, so a fill never waits behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from om_core.failures import DEFAULT_RETRY_SECONDS, dead_letter, retry_transient
from om_core.messaging.base import ConsumerActivity, DeadLetter, Message
from om_core.messaging.topology import ORDER_UPDATES_QUEUE
from om_core.updates.apply import Applied, UpdateApplier
from om_core.updates.validate import check_reports
from om_plugins.reports import (
    ExecutionReport,
    InvalidReport,
    OrderReport,
    Report,
    StreamGap,
)

#: Turns one message's body into reports (the exchange adapter's ``decode_stream``).
Decode = Callable[[bytes], list[Report]]

__all__ = ["EventSubscriber"]

log = logging.getLogger(__name__)


class EventSubscriber:
    def __init__(
        self,
        applier: UpdateApplier,
        decode: Decode,
        *,
        on_gateway_reconnected: Callable[[], Awaitable[None]] | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        retries: ConsumerActivity | None = None,
        queue: str = ORDER_UPDATES_QUEUE,
    ) -> None:
        self._applier = applier
        self._decode = decode
        self._on_reconnected = on_gateway_reconnected
        self._retry_seconds = retry_seconds
        self._retries = retries
        self._queue = queue

    def parse(self, body: bytes) -> list[Report]:
        """The message's reports; raises :class:`DeadLetter` with the reason when it can
        never be applied."""
        try:
            reports = self._decode(body)
            if not isinstance(reports, list):
                raise InvalidReport("the exchange plugin's decoder returned no list")
            check_reports(reports)
        except InvalidReport as exc:
            log.warning("dead-lettering an order update: %s", exc)
            raise DeadLetter(f"invalid order update: {exc}") from None
        except Exception as exc:
            # The decoder is a plugin's code: whatever it raises about this message, the
            # message cannot be read, and retrying will not change that.
            log.warning("dead-lettering an order update the decoder failed on: %r", exc)
            raise DeadLetter(f"invalid order update: the decoder failed: {exc!r}") from None
        return reports

    async def handle(self, message: Message) -> None:
        await self.process_bytes(message.body)

    async def handle_batch(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """Messages that arrived together: their reports in one transaction when possible
        (also the several reports of one message: Bybit pushes orders that changed at once
        together).

        Returns, per message, ``None`` or the exception :meth:`handle` would have raised: a
        batch that fails for any reason — also a transient one that outlasted the retry bound —
        is applied again message by message, so one bad report costs only its own message.
        The retry bound counts from the batch's start for every message in it.
        """
        deadline = time.monotonic() + self._retry_seconds
        outcomes: list[BaseException | None] = [None] * len(messages)
        parsed: list[tuple[int, list[Report]]] = []
        for index, message in enumerate(messages):
            try:
                parsed.append((index, self.parse(message.body)))
            except DeadLetter as exc:
                outcomes[index] = exc
        reports = [r for _, rs in parsed for r in rs if not isinstance(r, StreamGap)]
        together = len(reports) > 1 and all(
            not isinstance(r, StreamGap) for _, rs in parsed for r in rs
        )
        if together:
            try:
                await retry_transient(
                    lambda: self._applier.apply_many(reports),
                    what=f"applying a batch of {len(reports)} updates",
                    deadline=deadline,
                    tracker=self._retries,
                    queue=self._queue,
                    count=len(parsed),
                )
                return outcomes
            except Exception as exc:
                log.warning(
                    "a batch of %d updates failed (%r); applying them one message at a time",
                    len(reports),
                    exc,
                )
        for index, rs in parsed:
            try:
                await self._apply(rs, deadline)
            except Exception as exc:
                outcomes[index] = exc
        return outcomes

    async def process_bytes(self, body: bytes) -> list[Applied]:
        return await self._apply(self.parse(body), time.monotonic() + self._retry_seconds)

    async def _apply(self, reports: list[Report], deadline: float) -> list[Applied]:
        """Apply one message's reports; raises :class:`DeadLetter` when one failed for a
        reason that is not transient, or transiently past the retry bound."""
        try:
            return await self._apply_all(reports, deadline)
        except Exception as exc:
            raise dead_letter(exc, "applying an order update", logger=log) from exc

    async def _apply_all(self, reports: list[Report], deadline: float) -> list[Applied]:
        results: list[Applied] = []
        # Reports are applied one by one, each in its own transaction: a redelivery after a
        # failure halfway re-applies the first ones as no-ops.
        for report in reports:
            if isinstance(report, StreamGap):
                log.warning(
                    "the order stream was interrupted (%s): orders may have changed unseen",
                    report.reason or "reconnected",
                )
                reconcile = self._on_reconnected
                if reconcile is not None:
                    await retry_transient(
                        reconcile,
                        what="reconciling after a stream gap",
                        deadline=deadline,
                        tracker=self._retries,
                        queue=self._queue,
                    )
                continue
            results.append(await self._apply_one(report, deadline))
        return results

    async def _apply_one(self, report: OrderReport | ExecutionReport, deadline: float) -> Applied:
        return await retry_transient(
            lambda: self._applier.apply(report),
            what=f"applying an update for {report.symbol}",
            deadline=deadline,
            tracker=self._retries,
            queue=self._queue,
        )
