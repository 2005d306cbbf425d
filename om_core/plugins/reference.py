"""The reference of the built-in plugins' settings (``docs/plugin-settings.md``), generated
from their settings models so it cannot go stale — a test compares it with this output.

Regenerate it with ``python -m om_core.plugins.reference > docs/plugin-settings.md``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from om_core.config import BUILTIN_PLUGINS
from om_core.plugins.introspect import model_rows, nested_models, setting_docs
from om_core.plugins.loader import import_plugin
from om_core.plugins.settings import env_prefix_for

__all__ = ["render_reference"]

_HEADER = """# Built-in plugins: settings reference

<!-- Generated from the plugins' settings models by
     `python -m om_core.plugins.reference > docs/plugin-settings.md`; do not edit by hand
     (tests/sdk/test_reference.py fails when this page is out of date). -->

Every built-in plugin reads its settings from a `[plugin.<name>]` table of the config file
and from environment variables (the environment wins); `om plugins show <name>` prints them
with the values in effect. Values are validated at startup: an unknown setting or a bad
value stops the service with one line per problem. Decimal values are best written as
strings (`"0.1"`), lists and tables as JSON in a variable
(`OM_PLUGIN_RISK_ALLOWED_SYMBOLS='["BTCUSDT"]'`). "unset" means the setting is off (or
chosen automatically, as described).

How plugins work, and how to write your own: [plugins.md](plugins.md).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text not in ("", "required", "unset") else text or "-"


def _intro(target: Any) -> str:
    """The first paragraph of the plugin's documentation, and where its code lives."""
    doc = inspect.getdoc(target) or ""
    first = " ".join(doc.split("\n\n", 1)[0].split())
    module = getattr(target, "__module__", "")
    path = module.replace(".", "/") + ".py"
    return f"{first} Code: [{path}](../{path})." if first else f"Code: [{path}](../{path})."


def _section(name: str, target: Any) -> str:
    model: type[BaseModel] | None = getattr(target, "settings_model", None)
    prefix = env_prefix_for(name, target)
    lines = [f"## `{name}`", "", _intro(target), ""]
    if model is None:
        return "\n".join([*lines, "No settings.", ""])
    lines += [
        f"`[plugin.{name}]` in the config file, or `{prefix}<SETTING>` variables.",
        "",
        "| setting | type | default | variable | meaning |",
        "|---|---|---|---|---|",
    ]
    for doc in setting_docs(name, target, model):
        meaning = doc.description + (" Secret: never shown." if doc.secret else "")
        lines.append(
            f"| `{doc.name}` | {_cell(doc.type)} | {_cell(_code(doc.default))} | "
            f"`{doc.env}` | {_cell(meaning)} |"
        )
    for nested in nested_models(model):
        lines += [
            "",
            f"`{nested.__name__}`: {_cell(' '.join((inspect.getdoc(nested) or '').split()))}",
            "",
            "| setting | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for setting, kind, default, meaning in model_rows(nested):
            lines.append(
                f"| `{setting}` | {_cell(kind)} | {_cell(_code(default))} | {_cell(meaning)} |"
            )
    lines.append("")
    return "\n".join(lines)


def render_reference(names: Sequence[str] = BUILTIN_PLUGINS) -> str:
    sections = [_HEADER]
    sections.append("Plugins: " + " · ".join(f"[`{n}`](#{n})" for n in names) + "\n")
    for name in names:
        sections.append(_section(name, import_plugin(name)))
    return "\n".join(sections).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_reference())
