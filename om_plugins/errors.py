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
    """Base class of every exchange outcome that is not success.

    ``code`` is the exchange's own error code (``"110007"``), ``reason_code`` its neutral
    meaning, one of :class:`om_plugins.reports.ReasonCode` (``"INSUFFICIENT_BALANCE"``);
    both travel to the order, its events and the API.
    """

    def __init__(self, message: str, *, code: str = "", reason_code: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason_code = reason_code


class ExchangeRejected(ExchangeError):
    """The exchange definitively refused the request; nothing was placed or changed."""


class ExchangeUnavailable(ExchangeError):
    """The request certainly did not reach the exchange; it is safe to try again later.

    ``retry_after`` (seconds) is when trying again makes sense; with ``reason_code``
    ``RATE_LIMITED`` or ``IP_BANNED`` and a long wait, the engine pauses trading meanwhile.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        reason_code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, reason_code=reason_code)
        self.retry_after = retry_after


class OutcomeUnknown(ExchangeError):
    """The request may or may not have been executed (timeout, 5xx, connection lost)."""


class ExchangeAuthError(ExchangeError):
    """Credentials are wrong, expired or lack permission; trading must stop."""


class DuplicateClientOrderId(ExchangeError):
    """The exchange already has an order with this client id (Bybit 110072 / 170141).

    Not a failure: the order was placed by an earlier attempt. The engine looks it up.
    """
