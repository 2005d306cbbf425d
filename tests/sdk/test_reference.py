"""docs/plugin-settings.md is generated from the built-in plugins' settings models; when a
setting is added, renamed or its default changes, this fails until the page is regenerated:

    .venv/bin/python -m om_core.plugins.reference > docs/plugin-settings.md
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from om_core.config import BUILTIN_PLUGINS
from om_core.plugins.loader import import_plugin
from om_core.plugins.reference import render_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "plugin-settings.md"


def test_the_reference_page_is_up_to_date() -> None:
    assert PAGE.read_text(encoding="utf-8") == render_reference(), (
        "docs/plugin-settings.md is out of date: run "
        "`.venv/bin/python -m om_core.plugins.reference > docs/plugin-settings.md`"
    )


def test_every_setting_of_every_builtin_plugin_is_listed_with_its_variable() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert set(BUILTIN_PLUGINS) == {"paper", "risk", "order_type", "sizing", "bybit"}
    for name in BUILTIN_PLUGINS:
        assert f"## `{name}`" in text
        model: type[BaseModel] = import_plugin(name).settings_model
        for field in model.model_fields:
            assert f"| `{field}` |" in text, (name, field)
    # The defaults a user would otherwise learn from a rejection.
    assert '| `max_order_notional` | decimal or unset | `"100000"` |' in text
    assert "`OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL`" in text
    assert "`OM_BYBIT_API_SECRET`" in text and "Secret: never shown." in text
