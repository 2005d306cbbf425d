"""``om signal send``: publish one trading signal to the configured broker by hand.

The signal is validated with the service's own parser before anything is published, and the
publish waits for the broker's confirm (RabbitMQ publisher confirms). The message id is the
signal id, as the service expects. ``memory://`` cannot work here: the in-process bus lives
inside the service's process, which another process cannot reach.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from om_core.config import Settings
from om_core.events.payloads import dumps
from om_core.messaging.topology import SIGNALS_QUEUE
from om_core.signals.contract import SignalLimits, parse_message, parse_signal

__all__ = ["SendError", "build_signal", "send_signal"]


class SendError(Exception):
    """The signal cannot be published; the message says why."""


def build_signal(
    *,
    base: Mapping[str, Any] | None = None,
    now: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """A signal payload from ``base`` (a decoded JSON object) overlaid with the non-``None``
    ``fields``; ``signal_id`` defaults to a new UUID and ``created_at`` to ``now``.

    Raises :class:`~om_core.signals.contract.InvalidSignal` when the result is not a valid
    signal, so nothing invalid is ever published.
    """
    payload: dict[str, Any] = dict(base or {})
    payload.update({key: value for key, value in fields.items() if value is not None})
    payload.setdefault("signal_id", str(uuid.uuid4()))
    payload.setdefault("created_at", now.isoformat())
    parse_signal(payload)
    return payload


async def send_signal(settings: Settings, payload: Mapping[str, Any]) -> str:
    """Publish ``payload`` to ``model-service.trading_signals``; returns the signal id once
    the broker confirmed the message."""
    url = settings.broker_url
    if url.startswith("memory://"):
        raise SendError(
            "OM_BROKER_URL is memory://, the in-process bus of a running service: another "
            "process cannot reach it. Set OM_BROKER_URL=amqp://… to the broker the service "
            "consumes from."
        )
    from om_core.messaging.base import PublishError
    from om_core.messaging.rabbitmq import RabbitBus

    body = dumps(payload).encode("utf-8")
    # The service's own entry and bounds: what it would dead-letter is never published.
    signal, _ = parse_message(body, SignalLimits.of(settings))
    # Declares only the signals queue (and its dead-letter queue), with the arguments the
    # service declares it with, so a fresh broker ends up exactly as the service expects.
    bus = RabbitBus(
        url,
        queue_type=settings.queue_type,
        delivery_limit=settings.delivery_limit,
        queues=(SIGNALS_QUEUE,),
    )
    try:
        await bus.start()
        await bus.publish(SIGNALS_QUEUE, body, message_id=signal.signal_id)
    except PublishError as exc:
        raise SendError(f"the broker did not confirm the signal: {exc}") from exc
    finally:
        await bus.close()
    return signal.signal_id
