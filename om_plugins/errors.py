"""Errors plugins raise to tell the engine what happened."""

from __future__ import annotations

__all__ = [
    "DuplicateClientOrderId",
    "ExchangeAuthError",
    "ExchangeError",
    "ExchangeRejected",
    "ExchangeUnavailable",
    "OutcomeUnknown",
    "PluginError",
]


class PluginError(Exception):
    """A plugin is broken or misconfigured; raised at startup, it stops the service."""


class ExchangeError(Exception):
    """Base class of every exchange outcome that is not success."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ExchangeRejected(ExchangeError):
    """The exchange definitively refused the request; nothing was placed or changed."""


class ExchangeUnavailable(ExchangeError):
    """The request certainly did not reach the exchange; it is safe to try again later."""

    def __init__(self, message: str, *, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class OutcomeUnknown(ExchangeError):
    """The request may or may not have been executed (timeout, 5xx, connection lost)."""


class ExchangeAuthError(ExchangeError):
    """Credentials are wrong, expired or lack permission; trading must stop."""


class DuplicateClientOrderId(ExchangeError):
    """The exchange already has an order with this client id (Bybit 110072 / 170141).

    Not a failure: the order was placed by an earlier attempt. The engine looks it up.
    """
