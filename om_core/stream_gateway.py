"""Run an exchange plugin's stream gateway: the exchange's private order stream onto
``ws-gateway.order`` (``om ws-gateway``, ``om run --with-ws-gateway``).

The gateway itself belongs to the exchange plugin (``om_register_stream_gateways``); the
engine only hands it a way to publish with publisher confirms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from om_core.config import Settings
from om_core.messaging.base import MessageBus
from om_core.messaging.topology import ORDER_UPDATES_QUEUE
from om_core.plugins import PluginHooks, load_plugins
from om_plugins.errors import PluginError
from om_plugins.exchange import GatewayContext, StreamGateway

__all__ = ["create_gateway", "run_gateway"]


def create_gateway(hooks: PluginHooks, exchange: str, bus: MessageBus) -> StreamGateway:
    """The stream gateway the plugin providing ``exchange`` registered, publishing on
    ``bus``; :class:`PluginError` when there is none (or it cannot be built)."""
    factories = hooks.stream_gateway_factories()
    if exchange not in factories:
        known = ", ".join(sorted(factories)) or "none"
        raise PluginError(
            f"no enabled plugin provides a stream gateway for exchange {exchange!r} "
            f"(gateways: {known}); set OM_EXCHANGE to the exchange whose stream to forward"
        )

    async def publish(body: bytes, message_id: str, kind: str) -> None:
        await bus.publish(ORDER_UPDATES_QUEUE, body, message_id=message_id, type=kind)

    _plugin, factory = factories[exchange]
    gateway: StreamGateway = factory(GatewayContext(publish=publish))
    return gateway


async def run_gateway(
    settings: Settings,
    bus: MessageBus,
    *,
    stop: asyncio.Event,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``OM_EXCHANGE``'s gateway until ``stop`` is set; ``bus`` must be started."""
    plugins = load_plugins(settings.plugins, settings.plugin_config, env)
    gateway = create_gateway(PluginHooks(plugins.pm), settings.exchange, bus)
    await gateway.start()
    try:
        await stop.wait()
    finally:
        await gateway.stop()
