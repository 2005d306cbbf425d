"""EventSubscriber: the bus handler for ``ws-gateway.order``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from om_core.engine.consumer import retry_transient
from om_core.messaging.base import DeadLetter, Message
from om_core.updates.apply import Applied, UpdateApplier
from om_core.updates.parse import ControlMessage, InvalidUpdate, parse_updates

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

    async def process_bytes(self, body: bytes) -> list[Applied]:
        try:
            reports = parse_updates(body)
        except InvalidUpdate as exc:
            log.warning("dead-lettering an order update: %s", exc)
            raise DeadLetter(f"invalid order update: {exc}") from None
        results: list[Applied] = []
        # Reports are applied one by one, each in its own transaction: a redelivery after a
        # failure halfway re-applies the first ones as no-ops.
        for report in reports:
            if isinstance(report, ControlMessage):
                log.warning("the WS-Gateway reconnected: orders may have changed unseen")
                if self._on_reconnected is not None:
                    await self._on_reconnected()
                continue
            result = await retry_transient(
                lambda r=report: self._applier.apply(r),  # type: ignore[misc]
                what=f"applying an update for {report.symbol}",
            )
            results.append(result)
        return results
