"""EventSubscriber: the bus handler for ``ws-gateway.order``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from om_core.engine.consumer import retry_transient
from om_core.messaging.base import DeadLetter, Message
from om_core.updates.apply import Applied, UpdateApplier
from om_core.updates.parse import (
    ControlMessage,
    ExecutionReport,
    InvalidUpdate,
    OrderReport,
    Report,
    parse_updates,
)

__all__ = ["EventSubscriber"]

log = logging.getLogger(__name__)


class EventSubscriber:
    def __init__(
        self,
        applier: UpdateApplier,
        *,
        on_gateway_reconnected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._applier = applier
        self._on_reconnected = on_gateway_reconnected

    async def handle(self, message: Message) -> None:
        await self.process_bytes(message.body)

    async def handle_batch(self, messages: Sequence[Message]) -> list[BaseException | None]:
        """Messages that arrived together: their reports in one transaction when possible
        (also the several reports of one message: Bybit pushes orders that changed at once
        together).

        Returns, per message, ``None`` or the exception :meth:`handle` would have raised: a
        batch that fails for any reason but a transient one is applied again message by
        message, so one bad report costs only its own message.
        """
        outcomes: list[BaseException | None] = [None] * len(messages)
        parsed: list[tuple[int, list[Report]]] = []
        for index, message in enumerate(messages):
            try:
                parsed.append((index, parse_updates(message.body)))
            except InvalidUpdate as exc:
                log.warning("dead-lettering an order update: %s", exc)
                outcomes[index] = DeadLetter(f"invalid order update: {exc}")
        reports = [r for _, rs in parsed for r in rs if not isinstance(r, ControlMessage)]
        together = len(reports) > 1 and all(
            not isinstance(r, ControlMessage) for _, rs in parsed for r in rs
        )
        if together:
            try:
                await retry_transient(
                    lambda: self._applier.apply_many(reports),
                    what=f"applying a batch of {len(reports)} updates",
                )
                return outcomes
            except Exception:
                log.warning(
                    "a batch of %d updates failed; applying them one message at a time",
                    len(reports),
                    exc_info=True,
                )
        for index, rs in parsed:
            try:
                await self._apply(rs)
            except Exception as exc:
                outcomes[index] = exc
        return outcomes

    async def process_bytes(self, body: bytes) -> list[Applied]:
        try:
            reports = parse_updates(body)
        except InvalidUpdate as exc:
            log.warning("dead-lettering an order update: %s", exc)
            raise DeadLetter(f"invalid order update: {exc}") from None
        return await self._apply(reports)

    async def _apply(self, reports: list[Report]) -> list[Applied]:
        results: list[Applied] = []
        # Reports are applied one by one, each in its own transaction: a redelivery after a
        # failure halfway re-applies the first ones as no-ops.
        for report in reports:
            if isinstance(report, ControlMessage):
                log.warning("the WS-Gateway reconnected: orders may have changed unseen")
                if self._on_reconnected is not None:
                    await self._on_reconnected()
                continue
            results.append(await self._apply_one(report))
        return results

    async def _apply_one(self, report: OrderReport | ExecutionReport) -> Applied:
        return await retry_transient(
            lambda: self._applier.apply(report),
            what=f"applying an update for {report.symbol}",
        )
