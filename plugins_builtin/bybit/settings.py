"""Settings of the Bybit exchange (``OM_EXCHANGE=bybit``): ``OM_BYBIT_<FIELD>`` variables or
the config file's ``[plugin.bybit]`` table.

Example::

    OM_EXCHANGE=bybit
    OM_BYBIT_API_KEY=...
    OM_BYBIT_API_SECRET=...
    OM_BYBIT_ENV=testnet            # testnet (default) | demo | mainnet
    OM_BYBIT_ACCOUNT_LABEL=main
    OM_BYBIT_CATEGORIES=linear,spot  # default: linear,inverse,spot
    OM_BYBIT_POSITION_MODE=auto     # auto (read from Bybit) | one_way | hedge

Everything validates without credentials: the plugin is loaded with the built-ins even when
another exchange is selected, and asks for the keys only when it is started.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from om_plugins import Category, PluginError

__all__ = ["ENV_PREFIX", "BybitEnv", "BybitSettings", "Credentials", "PositionModeSetting"]

ENV_PREFIX = "OM_BYBIT_"


class BybitEnv(StrEnum):
    TESTNET = "testnet"
    DEMO = "demo"
    MAINNET = "mainnet"


class PositionModeSetting(StrEnum):
    """How the adapter learns the account's position mode of a derivatives symbol."""

    #: Asked from ``/v5/position/list`` once per symbol, then cached.
    AUTO = "auto"
    ONE_WAY = "one_way"
    HEDGE = "hedge"


#: REST and private-stream addresses per environment (Bybit docs: guide.mdx, demo.mdx).
_HTTP_URLS = {
    BybitEnv.TESTNET: "https://api-testnet.bybit.com",
    BybitEnv.DEMO: "https://api-demo.bybit.com",
    BybitEnv.MAINNET: "https://api.bybit.com",
}
_WS_URLS = {
    BybitEnv.TESTNET: "wss://stream-testnet.bybit.com/v5/private",
    BybitEnv.DEMO: "wss://stream-demo.bybit.com/v5/private",
    BybitEnv.MAINNET: "wss://stream.bybit.com/v5/private",
}


class Credentials:
    """An API key pair; ``repr`` and ``str`` never show either part."""

    __slots__ = ("api_key", "api_secret")

    def __init__(self, api_key: str, api_secret: str) -> None:
        self.api_key = api_key
        self.api_secret = api_secret

    def __repr__(self) -> str:
        return "Credentials(api_key='***', api_secret='***')"

    __str__ = __repr__


class BybitSettings(BaseModel):
    """How to reach one Bybit account and how gently to use it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = Field(default=None, description="API key (never logged).")
    api_secret: SecretStr | None = Field(default=None, description="API secret (never logged).")
    env: BybitEnv = Field(
        default=BybitEnv.TESTNET,
        description="testnet (default), demo (mainnet demo trading) or mainnet (real money).",
    )
    base_url: str | None = Field(
        default=None, description="REST address override, e.g. http://127.0.0.1:8080."
    )
    ws_url: str | None = Field(
        default=None, description="Private WebSocket address override (used by the WS-Gateway)."
    )
    account_label: str = Field(
        default="default",
        min_length=1,
        max_length=64,
        description="Names the account in logs and in the WS-Gateway's envelopes.",
    )
    recv_window_ms: int = Field(
        default=5000,
        ge=1000,
        le=60000,
        description="How long after signing Bybit still accepts a request (X-BAPI-RECV-WINDOW).",
    )
    request_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Connect and read timeout of one HTTP request."
    )
    # Bybit's default per-UID limits (rate-limit.mdx, UTA Pro table); raise them if your
    # account has a higher tier. Linear and inverse share their create and cancel limits.
    rate_limit_create_linear: int = Field(
        default=10, ge=1, description="/v5/order/create per second, linear + inverse."
    )
    rate_limit_create_spot: int = Field(
        default=20, ge=1, description="/v5/order/create per second, spot."
    )
    rate_limit_cancel_linear: int = Field(
        default=10, ge=1, description="/v5/order/cancel per second, linear + inverse."
    )
    rate_limit_cancel_spot: int = Field(
        default=20, ge=1, description="/v5/order/cancel per second, spot."
    )
    rate_limit_reads: int = Field(
        default=50, ge=1, description="Per second for each read endpoint (orders, positions, ...)."
    )
    instrument_cache_ttl_s: float = Field(
        default=300.0, ge=0, description="How long instrument rules are reused before a refresh."
    )
    trade_workers: int = Field(
        default=4, ge=1, le=64, description="Threads sending creates and cancels (pybit blocks)."
    )
    read_workers: int = Field(default=4, ge=1, le=64, description="Threads sending reads.")
    read_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries of a read that failed transiently."
    )
    linear_settle_coins: list[str] = Field(
        default_factory=lambda: ["USDT", "USDC"],
        description="Settle coins to list linear orders and positions for when no symbol is given.",
    )
    categories: list[Category] = Field(
        default_factory=lambda: [Category.LINEAR, Category.INVERSE, Category.SPOT],
        min_length=1,
        description="Categories this account trades (and reconciliation covers); others are "
        "refused.",
    )
    position_mode: PositionModeSetting = Field(
        default=PositionModeSetting.AUTO,
        description="auto (read from Bybit per symbol, cached), one_way or hedge; spot is "
        "always one-way.",
    )
    spot_quote_coin: str = Field(
        default="USDT",
        min_length=1,
        max_length=16,
        description="Spot balances are reported as positions of <COIN><spot_quote_coin>.",
    )
    spot_coins: list[str] = Field(
        default_factory=list,
        description="Coins whose spot balances are positions; empty: every coin held with a "
        "listed <COIN><spot_quote_coin> spot pair.",
    )
    fee_rate_cache_ttl_s: float = Field(
        default=3600.0, ge=0, description="How long fee rates from /v5/account/fee-rate are reused."
    )
    leverage_cache_ttl_s: float = Field(
        default=60.0, ge=0, description="How long a symbol's leverage is reused."
    )
    # HTTP 403 (IP ban, at least 10 minutes at Bybit) and 429: nothing is sent meanwhile.
    ban_initial_s: float = Field(
        default=60.0, ge=60, description="First pause after an HTTP 403/429 (at least 60 s)."
    )
    ban_max_s: float = Field(
        default=3600.0, ge=60, description="Longest pause; each ban in a row doubles it."
    )
    # The WS-Gateway's stream handling.
    ws_ping_interval_s: float = Field(default=20.0, gt=0, description="Ping every this often.")
    ws_ping_timeout_s: float = Field(default=10.0, gt=0, description="Pong must come within.")
    ws_connect_timeout_s: float = Field(
        default=15.0, gt=0, description="Connect, authenticate and subscribe within this."
    )
    ws_reconnect_initial_s: float = Field(default=1.0, gt=0, description="First reconnect delay.")
    ws_reconnect_max_s: float = Field(default=60.0, gt=0, description="Longest reconnect delay.")
    ws_queue_size: int = Field(
        default=10_000, ge=1, description="Messages held while the broker is unreachable."
    )

    @field_validator("api_key", "api_secret", "base_url", "ws_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @field_validator("linear_settle_coins", "spot_coins", mode="before")
    @classmethod
    def _coin_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [c.strip().upper() for c in value.split(",") if c.strip()]
        return value

    @field_validator("spot_quote_coin")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()

    @field_validator("categories", mode="before")
    @classmethod
    def _category_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [c.strip().lower() for c in value.split(",") if c.strip()]
        return value

    @field_validator("categories")
    @classmethod
    def _unique(cls, value: list[Category]) -> list[Category]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _ban_bounds(self) -> BybitSettings:
        if self.ban_max_s < self.ban_initial_s:
            raise ValueError("ban_max_s must be at least ban_initial_s")
        return self

    @property
    def http_url(self) -> str:
        return self.base_url or _HTTP_URLS[self.env]

    @property
    def private_ws_url(self) -> str:
        return self.ws_url or _WS_URLS[self.env]

    @property
    def testnet(self) -> bool:
        return self.env is BybitEnv.TESTNET

    @property
    def demo(self) -> bool:
        return self.env is BybitEnv.DEMO

    def credentials(self) -> Credentials:
        """The key pair, or a :class:`PluginError` naming what is missing."""
        missing = [
            f"{ENV_PREFIX}{name.upper()}"
            for name, value in (("api_key", self.api_key), ("api_secret", self.api_secret))
            if value is None
        ]
        if missing:
            raise PluginError(
                f"OM_EXCHANGE=bybit needs {' and '.join(missing)} (or api_key/api_secret in "
                "[plugin.bybit]); create an API key for the "
                f"{self.env.value} environment on Bybit"
            )
        assert self.api_key is not None and self.api_secret is not None
        return Credentials(self.api_key.get_secret_value(), self.api_secret.get_secret_value())
