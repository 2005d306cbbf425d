"""Settings of the paper exchange (``[plugin.paper]`` or ``OM_PLUGIN_PAPER_<FIELD>``).

Example::

    [plugin.paper]
    initial_balance = "50000"
    slippage_bps = "2"
    random_walk = false

    [plugin.paper.prices]
    BTCUSDT = "65000"

    [plugin.paper.instruments.DOGEUSDT]
    tick_size = "0.00001"
    qty_step = "1"
    min_qty = "1"
    max_qty = "10000000"
    min_notional = "5"

``prices`` and ``instruments`` are merged over the built-in ones (BTCUSDT, ETHUSDT,
SOLUSDT), symbol by symbol; set ``include_default_instruments = false`` to list only your
own. In an environment variable, give a table as JSON:
``OM_PLUGIN_PAPER_PRICES='{"BTCUSDT": "65000"}'``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFAULT_INSTRUMENTS", "DEFAULT_PRICES", "PaperInstrument", "PaperSettings"]


class PaperInstrument(BaseModel):
    """Trading rules of one simulated linear (USDT-settled perpetual) instrument.

    The names follow Bybit's ``instruments-info``: ``tick_size`` is ``priceFilter.tickSize``,
    ``qty_step``/``min_qty``/``max_qty``/``max_market_qty``/``min_notional`` are
    ``lotSizeFilter``'s ``qtyStep``/``minOrderQty``/``maxOrderQty``/``maxMktOrderQty``/
    ``minNotionalValue``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tick_size: Decimal = Field(gt=0, description="Price grid.")
    qty_step: Decimal = Field(gt=0, description="Quantity grid, in the base coin.")
    min_qty: Decimal = Field(gt=0, description="Smallest order quantity.")
    max_qty: Decimal = Field(gt=0, description="Largest limit-order quantity.")
    max_market_qty: Decimal | None = Field(
        default=None, gt=0, description="Largest market-order quantity (default: max_qty)."
    )
    min_notional: Decimal = Field(
        default=Decimal(0), ge=0, description="Smallest order value (qty × price) in USDT."
    )
    min_price: Decimal | None = Field(
        default=None, gt=0, description="Lowest accepted limit price (default: one tick)."
    )
    max_price: Decimal | None = Field(
        default=None, gt=0, description="Highest accepted limit price (default: unbounded)."
    )
    base_coin: str = Field(default="", description="Default: the symbol without 'USDT'.")
    max_fill_qty: Decimal | None = Field(
        default=None,
        gt=0,
        description=(
            "Simulated liquidity: at most this quantity of one order fills per matching event "
            "(placement or price move). Leave unset for unlimited liquidity; set it to see "
            "partial fills."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_qty > self.max_qty:
            raise ValueError(f"min_qty {self.min_qty} is above max_qty {self.max_qty}")
        return self


#: Bybit's published rules. BTCUSDT is copied from Bybit's own instruments-info example;
#: ETHUSDT and SOLUSDT use the values Bybit lists for them at the time of writing.
DEFAULT_INSTRUMENTS: dict[str, PaperInstrument] = {
    "BTCUSDT": PaperInstrument(
        tick_size=Decimal("0.10"),
        qty_step=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("1190.000"),
        max_market_qty=Decimal("500.000"),
        min_notional=Decimal("5"),
        min_price=Decimal("0.10"),
        max_price=Decimal("1999999.80"),
        base_coin="BTC",
    ),
    "ETHUSDT": PaperInstrument(
        tick_size=Decimal("0.01"),
        qty_step=Decimal("0.01"),
        min_qty=Decimal("0.01"),
        max_qty=Decimal("7240.00"),
        max_market_qty=Decimal("3620.00"),
        min_notional=Decimal("5"),
        min_price=Decimal("0.01"),
        max_price=Decimal("199999.98"),
        base_coin="ETH",
    ),
    "SOLUSDT": PaperInstrument(
        tick_size=Decimal("0.010"),
        qty_step=Decimal("0.1"),
        min_qty=Decimal("0.1"),
        max_qty=Decimal("79770.0"),
        max_market_qty=Decimal("24500.0"),
        min_notional=Decimal("5"),
        min_price=Decimal("0.010"),
        max_price=Decimal("19999.980"),
        base_coin="SOL",
    ),
}

DEFAULT_PRICES: dict[str, Decimal] = {
    "BTCUSDT": Decimal("60000"),
    "ETHUSDT": Decimal("3000"),
    "SOLUSDT": Decimal("150"),
}


def _json_table(value: Any) -> Any:
    # Environment variables carry tables as JSON; numbers must not pass through float.
    if isinstance(value, str):
        return json.loads(value, parse_float=Decimal)
    return value


class PaperSettings(BaseModel):
    """How the paper exchange simulates the market and the account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include_default_instruments: bool = Field(
        default=True, description="List BTCUSDT, ETHUSDT and SOLUSDT besides `instruments`."
    )
    instruments: dict[str, PaperInstrument] = Field(
        default_factory=dict,
        description="Extra instruments, or replacement rules for a built-in one, by symbol.",
    )
    prices: dict[str, Decimal] = Field(
        default_factory=dict,
        description=(
            "Starting price per symbol, over the defaults (BTCUSDT 60000, ETHUSDT 3000, "
            "SOLUSDT 150). Every listed instrument needs one."
        ),
    )
    initial_balance: Decimal = Field(
        default=Decimal(100_000), ge=0, description="Starting USDT wallet balance."
    )
    leverage: Decimal = Field(
        default=Decimal(10),
        ge=1,
        description=(
            "Leverage for the margin check: an order that grows a position needs "
            "(added position value / leverage) of available balance."
        ),
    )
    taker_fee_rate: Decimal = Field(
        default=Decimal("0.00055"), ge=0, description="Fee on immediately filled orders."
    )
    maker_fee_rate: Decimal = Field(
        default=Decimal("0.0002"), ge=0, description="Fee on resting limit orders that fill."
    )
    slippage_bps: Decimal = Field(
        default=Decimal(5),
        ge=0,
        description=(
            "Market orders fill this many basis points worse than the current price (a buy "
            "pays more, a sell gets less), rounded to the tick against the trader."
        ),
    )
    random_walk: bool = Field(
        default=True, description="Move prices randomly in the background while running."
    )
    walk_interval_seconds: Decimal = Field(
        default=Decimal(1), gt=0, description="Time between two random price moves."
    )
    walk_step_bps: Decimal = Field(
        default=Decimal(10),
        ge=0,
        description="Each move changes a price by a uniform random amount within ± this.",
    )
    walk_seed: int | None = Field(
        default=20240601,
        description="Seed of the random walk, so runs repeat; unset for a different walk each run.",
    )

    @field_validator("instruments", "prices", mode="before")
    @classmethod
    def _tables_from_json(cls, value: Any) -> Any:
        return _json_table(value)

    @model_validator(mode="after")
    def _every_instrument_priced(self) -> Self:
        missing = [s for s in self.catalogue() if s not in self.starting_prices()]
        if missing:
            raise ValueError(f"no starting price for {', '.join(missing)}; set prices.<SYMBOL>")
        bad = [s for s, p in self.starting_prices().items() if p <= 0]
        if bad:
            raise ValueError(f"starting prices must be positive: {', '.join(bad)}")
        return self

    def catalogue(self) -> dict[str, PaperInstrument]:
        """Every listed instrument by symbol: the defaults (if included) plus ``instruments``."""
        merged = dict(DEFAULT_INSTRUMENTS) if self.include_default_instruments else {}
        merged.update({symbol.upper(): rules for symbol, rules in self.instruments.items()})
        return merged

    def starting_prices(self) -> dict[str, Decimal]:
        merged = dict(DEFAULT_PRICES)
        merged.update({symbol.upper(): price for symbol, price in self.prices.items()})
        return merged
