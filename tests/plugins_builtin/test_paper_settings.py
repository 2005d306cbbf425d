from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from plugins_builtin.paper import PaperInstrument, PaperSettings

DOGE = {
    "tick_size": "0.00001",
    "qty_step": "1",
    "min_qty": "1",
    "max_qty": "10000000",
    "min_notional": "5",
}


def test_defaults_list_btc_eth_sol_with_their_prices() -> None:
    settings = PaperSettings()
    assert sorted(settings.catalogue()) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert settings.starting_prices() == {
        "BTCUSDT": Decimal(60000),
        "ETHUSDT": Decimal(3000),
        "SOLUSDT": Decimal(150),
    }
    assert settings.random_walk is True and settings.walk_seed is not None
    assert settings.taker_fee_rate == Decimal("0.00055")
    assert settings.maker_fee_rate == Decimal("0.0002")


def test_instruments_and_prices_merge_over_the_defaults() -> None:
    settings = PaperSettings.model_validate(
        {"instruments": {"DOGEUSDT": DOGE}, "prices": {"DOGEUSDT": "0.1", "BTCUSDT": "65000"}}
    )
    assert sorted(settings.catalogue()) == ["BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT"]
    assert settings.catalogue()["DOGEUSDT"].tick_size == Decimal("0.00001")
    assert settings.starting_prices()["BTCUSDT"] == Decimal(65000)


def test_tables_parse_from_json_environment_values_without_float() -> None:
    settings = PaperSettings.model_validate(
        {"prices": '{"BTCUSDT": 65000.1}', "random_walk": "false"}
    )
    assert settings.starting_prices()["BTCUSDT"] == Decimal("65000.1")
    assert settings.random_walk is False


def test_the_default_catalogue_can_be_left_out() -> None:
    settings = PaperSettings.model_validate(
        {
            "include_default_instruments": False,
            "instruments": {"DOGEUSDT": DOGE},
            "prices": {"DOGEUSDT": "0.1"},
        }
    )
    assert list(settings.catalogue()) == ["DOGEUSDT"]


@pytest.mark.parametrize(
    "values",
    [
        {"instruments": {"DOGEUSDT": DOGE}},  # no starting price
        {"prices": {"BTCUSDT": "0"}},
        {"slipage_bps": "1"},  # typo
        {"instruments": {"DOGEUSDT": {**DOGE, "tick": "1"}}, "prices": {"DOGEUSDT": "1"}},
        {"leverage": "0.5"},
    ],
)
def test_invalid_settings_fail_at_startup(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PaperSettings.model_validate(values)


def test_instrument_min_above_max_is_refused() -> None:
    with pytest.raises(ValidationError):
        PaperInstrument.model_validate({**DOGE, "min_qty": "20000000"})
