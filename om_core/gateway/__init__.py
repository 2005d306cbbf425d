"""The WS-Gateway: Bybit's private order and execution stream onto the message bus."""

from om_core.gateway.gateway import (
    RECONNECTED,
    SOURCE,
    Gateway,
    GatewayConfig,
    control_message,
    envelope,
    run_gateway,
)

__all__ = [
    "RECONNECTED",
    "SOURCE",
    "Gateway",
    "GatewayConfig",
    "control_message",
    "envelope",
    "run_gateway",
]
