"""``om plugins new NAME [--hooks …]``: a complete, installable plugin package to start from.

The package has a settings model, the chosen hooks (each a small working rule, off until
configured), unit tests of every hook, a test through the real engine (``EngineHarness``),
``py.typed``, strict mypy and a ``test`` extra — and its tests pass as generated.
``examples/plugin-template`` is exactly what ``om plugins new template`` writes (a test keeps
them equal), so the two can never drift apart.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_HOOKS", "HOOKS", "Scaffold", "ScaffoldError", "render", "write"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]$|^[a-z]$")


class ScaffoldError(ValueError):
    """The name, the hooks or the target directory cannot be used."""


@dataclass(frozen=True, slots=True)
class _Hook:
    """What one hook adds to the package."""

    summary: str
    settings: str = ""
    readme_rows: tuple[str, ...] = ()
    method: str = ""
    plugin_imports: tuple[str, ...] = ()
    sdk_imports: tuple[str, ...] = ()
    init: str = ""
    unit_tests: str = ""
    test_sdk_imports: tuple[str, ...] = ()
    test_kit_imports: tuple[str, ...] = ()
    test_std_imports: tuple[str, ...] = ()
    engine_settings: tuple[str, ...] = ()
    engine_test: str = ""


HOOKS: dict[str, _Hook] = {
    "check_signal": _Hook(
        summary="refuses signals for the symbols listed in `blocked_symbols` (none by default)",
        settings="""    blocked_symbols: list[str] = Field(
        default_factory=list, description="Symbols to refuse, e.g. DOGEUSDT."
    )
""",
        readme_rows=(
            "| `blocked_symbols` | `[]` | symbols to refuse (`SYMBOL_BLOCKED`), e.g. "
            "`OM_PLUGIN_@NAME@_BLOCKED_SYMBOLS='[\"DOGEUSDT\"]'` |",
        ),
        method='''
    @hookimpl
    def om_check_signal(self, signal: Signal, context: DecisionContext) -> Rejection | None:
        """Every plugin votes: a Rejection refuses the signal, None allows it."""
        if signal.symbol in self.settings.blocked_symbols:
            return Rejection(
                code="SYMBOL_BLOCKED",
                message=f"{signal.symbol} is blocked by the @name@ plugin",
                details={"symbol": signal.symbol},
            )
        return None
''',
        sdk_imports=("DecisionContext", "Rejection", "Signal"),
        unit_tests="""

def test_blocked_symbol_is_refused_and_others_pass() -> None:
    plugin = @Class@Plugin(@Class@Settings(blocked_symbols=["DOGEUSDT"]))
    refused = plugin.om_check_signal(make_signal("DOGEUSDT"), make_context("DOGEUSDT"))
    assert refused is not None and refused.code == "SYMBOL_BLOCKED"
    assert plugin.om_check_signal(make_signal("BTCUSDT"), make_context()) is None
""",
        test_kit_imports=("make_context", "make_signal"),
        engine_settings=('"blocked_symbols": ["BTCUSDT"]',),
        engine_test="""        blocked = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001")
        assert [(r.plugin, r.code) for r in blocked.reasons] == [
            ("@name@", "SYMBOL_BLOCKED"),
        ]
        assert harness.run_sync(symbol="ETHUSDT", side="buy", qty="0.01").placed
""",
    ),
    "select_order_type": _Hook(
        summary=(
            "turns signals weaker than `post_only_below_strength` into PostOnly limit orders "
            "one tick away from the reference price (off by default)"
        ),
        settings="""    post_only_below_strength: Decimal | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Signals weaker than this rest as PostOnly limits; unset: off.",
    )
""",
        readme_rows=(
            "| `post_only_below_strength` | unset | signals weaker than this become PostOnly "
            "limit orders one tick on the passive side of the reference price |",
        ),
        method='''
    @hookimpl
    def om_select_order_type(
        self, signal: Signal, context: DecisionContext
    ) -> OrderTypeDecision | None:
        """The first plugin to return a decision wins; None leaves it to the next one."""
        threshold = self.settings.post_only_below_strength
        if threshold is None or signal.price is not None or signal.strength >= threshold:
            return None
        tick = context.instrument.tick_size
        passive = context.reference_price - signal.side.sign * tick
        price = round_price(passive, tick, signal.side)
        return OrderTypeDecision(OrderType.LIMIT, price, TimeInForce.POST_ONLY)
''',
        plugin_imports=("from decimal import Decimal",),
        sdk_imports=(
            "DecisionContext",
            "OrderType",
            "OrderTypeDecision",
            "Signal",
            "TimeInForce",
        ),
        unit_tests="""

def test_weak_signals_rest_as_post_only_limits() -> None:
    plugin = @Class@Plugin(@Class@Settings(post_only_below_strength=Decimal("0.5")))
    weak = plugin.om_select_order_type(make_signal(strength="0.2"), make_context())
    # One tick below the 60000 reference for a buy: it rests, it never takes liquidity.
    assert weak == OrderTypeDecision(OrderType.LIMIT, Decimal("59999.9"), TimeInForce.POST_ONLY)
    assert plugin.om_select_order_type(make_signal(strength="0.9"), make_context()) is None
""",
        test_sdk_imports=("OrderType", "OrderTypeDecision", "TimeInForce"),
        test_kit_imports=("make_context", "make_signal"),
        test_std_imports=("from decimal import Decimal",),
        engine_settings=('"post_only_below_strength": "0.5"',),
        engine_test="""\
        weak = harness.run_sync(symbol="SOLUSDT", side="buy", qty="1", strength="0.2").order
        assert (weak.order_type, weak.price, weak.time_in_force) == (
            OrderType.LIMIT,
            Decimal("149.99"),
            TimeInForce.POST_ONLY,
        )
""",
    ),
    "calculate_quantity": _Hook(
        summary=(
            "sizes signals that name no `qty` or `notional` to `order_notional` in the quote "
            "coin (off by default)"
        ),
        settings="""    order_notional: Decimal | None = Field(
        default=None,
        gt=0,
        description="Size signals without qty or notional to this value; unset: off.",
    )
""",
        readme_rows=(
            "| `order_notional` | unset | size signals without `qty` or `notional` to this "
            "value in the quote coin (e.g. USDT), rounded down to the step "
            "(`SIZE_BELOW_MINIMUM` when that is under the exchange's minimum) |",
        ),
        method='''
    @hookimpl
    def om_calculate_quantity(
        self, signal: Signal, context: DecisionContext, order_type: OrderTypeDecision
    ) -> QuantityDecision | Rejection | None:
        """The first plugin to return a decision wins; None leaves it to the next one."""
        value = self.settings.order_notional
        explicit = signal.qty is not None or signal.notional is not None
        if value is None or explicit or signal.reduce_only:
            return None
        rules = context.instrument
        price = order_type.price if order_type.price is not None else context.reference_price
        # Whole steps whose value fits: an exact floor, never more than asked.
        qty = min((value // (price * rules.qty_step)) * rules.qty_step, rules.max_qty)
        if qty < rules.min_qty or qty * price < rules.min_notional:
            return Rejection(
                code="SIZE_BELOW_MINIMUM",
                message=f"{value} buys {qty} {signal.symbol}, below the exchange's minimum",
                details={"qty": str(qty), "min_qty": str(rules.min_qty)},
            )
        return QuantityDecision(qty)
''',
        plugin_imports=("from decimal import Decimal",),
        sdk_imports=(
            "DecisionContext",
            "OrderTypeDecision",
            "QuantityDecision",
            "Rejection",
            "Signal",
        ),
        unit_tests="""

def test_signals_without_a_size_get_the_configured_notional() -> None:
    plugin = @Class@Plugin(@Class@Settings(order_notional=Decimal("1000")))
    market = OrderTypeDecision(OrderType.MARKET)
    # 1000 USDT at 60000 is 0.01666…: 0.016 on the 0.001 step.
    sized = plugin.om_calculate_quantity(make_signal(), make_context(), market)
    assert sized == QuantityDecision(Decimal("0.016"))
    explicit = make_signal(qty="0.5")
    assert plugin.om_calculate_quantity(explicit, make_context(), market) is None
""",
        test_sdk_imports=("OrderType", "OrderTypeDecision", "QuantityDecision"),
        test_kit_imports=("make_context", "make_signal"),
        test_std_imports=("from decimal import Decimal",),
        engine_settings=('"order_notional": "1000"',),
        engine_test="""        sized = harness.run_sync(symbol="ETHUSDT", side="buy").order
        assert sized.qty == Decimal("0.33")  # 1000 USDT at 3000, on the 0.01 step
""",
    ),
    "check_order": _Hook(
        summary="refuses orders worth more than `max_order_notional` (off by default)",
        settings="""    max_order_notional: Decimal | None = Field(
        default=None, gt=0, description="Refuse orders worth more than this; unset: off."
    )
""",
        readme_rows=(
            "| `max_order_notional` | unset | refuse orders worth more than this in the quote "
            "coin (`ORDER_TOO_LARGE`) |",
        ),
        method='''
    @hookimpl
    def om_check_order(
        self, order: ProposedOrder, signal: Signal, context: DecisionContext
    ) -> Rejection | None:
        """Every plugin votes on the shaped order, just before it is sent."""
        limit = self.settings.max_order_notional
        if limit is not None and order.notional > limit:
            return Rejection(
                code="ORDER_TOO_LARGE",
                message=f"order value {order.notional} is above {limit}",
                details={"limit": str(limit), "actual": str(order.notional)},
            )
        return None
''',
        plugin_imports=("from decimal import Decimal",),
        sdk_imports=("DecisionContext", "ProposedOrder", "Rejection", "Signal"),
        unit_tests="""

def test_orders_above_the_limit_are_refused() -> None:
    plugin = @Class@Plugin(@Class@Settings(max_order_notional=Decimal("1000")))
    signal, context = make_signal(), make_context()
    refused = plugin.om_check_order(make_order(signal, qty="0.02"), signal, context)
    assert refused is not None and refused.details == {"limit": "1000", "actual": "1200.00"}
    assert plugin.om_check_order(make_order(signal, qty="0.01"), signal, context) is None
""",
        test_kit_imports=("make_context", "make_order", "make_signal"),
        test_std_imports=("from decimal import Decimal",),
        engine_settings=('"max_order_notional": "1000"',),
        engine_test="""        large = harness.run_sync(symbol="SOLUSDT", side="sell", qty="10")
        assert [(r.plugin, r.code) for r in large.reasons] == [
            ("@name@", "ORDER_TOO_LARGE"),
        ]
""",
    ),
    "order_event": _Hook(
        summary="counts the events the service publishes, by type",
        method='''
    @hookimpl
    def om_order_event(self, event: Mapping[str, Any]) -> None:
        """Observe every published event. It runs in the engine's event loop: never block
        here, hand slow work to your own thread or queue."""
        self.event_counts[str(event.get("event_type"))] += 1
''',
        plugin_imports=(
            "from collections import Counter",
            "from collections.abc import Mapping",
            "from typing import Any",
        ),
        init="""        self.event_counts: Counter[str] = Counter()
""",
        unit_tests="""

def test_events_are_counted_by_type() -> None:
    plugin = @Class@Plugin()
    plugin.om_order_event({"event_type": "order.created"})
    assert plugin.event_counts == {"order.created": 1}
""",
        engine_test="""\
        assert harness.run_sync(symbol="ETHUSDT", side="sell", qty="0.05").placed
        observer = harness.get_plugin("@name@")
        # Events are published after the order is recorded: wait for it, with a deadline.
        harness.wait_until(lambda: observer.event_counts["order.created"] >= 1)
""",
    ),
}

#: The hooks ``om plugins new`` gives a plugin unless told otherwise.
DEFAULT_HOOKS = ("check_signal",)


@dataclass(frozen=True, slots=True)
class Scaffold:
    """Names derived from the plugin name (the entry-point name users enable)."""

    name: str
    hooks: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def package(self) -> str:
        return self.name if self.name.startswith("om_") else f"om_{self.name}"

    @property
    def distribution(self) -> str:
        return self.package.replace("_", "-")

    @property
    def class_prefix(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_") if part)


def _check(name: str, hooks: Sequence[str]) -> tuple[str, ...]:
    if not _NAME.match(name) or "__" in name:
        raise ScaffoldError(
            f"plugin name {name!r}: use lower-case letters, digits and single underscores, "
            "starting with a letter (e.g. quant_risk); it is the name users enable"
        )
    chosen = tuple(dict.fromkeys(h.strip().removeprefix("om_") for h in hooks if h.strip()))
    if not chosen:
        raise ScaffoldError(f"choose at least one hook: {', '.join(HOOKS)}")
    unknown = [h for h in chosen if h not in HOOKS]
    if unknown:
        raise ScaffoldError(f"unknown hook(s) {', '.join(unknown)}; choose from {', '.join(HOOKS)}")
    # The order of HOOKS is the order of the pipeline: the files read top to bottom.
    return tuple(h for h in HOOKS if h in chosen)


def _sub(text: str, scaffold: Scaffold) -> str:
    for token, value in (
        ("@name@", scaffold.name),
        ("@NAME@", scaffold.name.upper()),
        ("@Class@", scaffold.class_prefix),
        ("@package@", scaffold.package),
        ("@dist@", scaffold.distribution),
    ):
        text = text.replace(token, value)
    return text


def _imports_block(lines: Sequence[str]) -> str:
    """``from x import a, b`` lines, merged per module and sorted like ruff's isort."""
    by_module: dict[str, set[str]] = {}
    for line in lines:
        module, names = line.removeprefix("from ").split(" import ")
        by_module.setdefault(module, set()).update(n.strip() for n in names.split(","))
    return "".join(
        f"from {module} import {', '.join(sorted(names, key=_isort_key))}\n"
        for module, names in sorted(by_module.items())
    )


def _isort_key(name: str) -> tuple[int, str]:
    # ruff/isort order: CONSTANTS, then Classes, then functions.
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def _from(module: str, names: Sequence[str], width: int = 100) -> str:
    ordered = sorted(set(names), key=_isort_key)
    line = f"from {module} import {', '.join(ordered)}\n"
    if len(line) <= width + 1:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in ordered) + ")\n"


def render(name: str, hooks: Sequence[str] = DEFAULT_HOOKS) -> Scaffold:
    """The package's files (relative path → text) for plugin ``name`` with ``hooks``."""
    chosen = _check(name, hooks)
    scaffold = Scaffold(name, chosen)
    parts = [HOOKS[h] for h in chosen]
    files = scaffold.files
    files["pyproject.toml"] = _sub(_PYPROJECT, scaffold)
    files["README.md"] = _readme(scaffold, parts)
    files[f"src/{scaffold.package}/__init__.py"] = _sub(_INIT, scaffold)
    files[f"src/{scaffold.package}/py.typed"] = ""
    files[f"src/{scaffold.package}/plugin.py"] = _plugin(scaffold, parts)
    files["tests/test_plugin.py"] = _tests(scaffold, parts)
    return scaffold


def _fill(text: str, width: int = 96) -> str:
    """Wrap ``text``, never inside a ``literal``."""
    protected = re.sub(r"`+[^`]+`+", lambda m: m.group(0).replace(" ", "\x00"), text)
    wrapped = textwrap.fill(protected, width, break_on_hyphens=False, break_long_words=False)
    return wrapped.replace("\x00", " ")


def _summary(parts: Sequence[_Hook]) -> str:
    sentences = [p.summary for p in parts]
    if len(sentences) == 1:
        return sentences[0]
    return "; ".join(sentences[:-1]) + "; and " + sentences[-1]


def _readme(scaffold: Scaffold, parts: Sequence[_Hook]) -> str:
    rows = [_sub(row, scaffold) for p in parts for row in p.readme_rows]
    hook_list = ", ".join(f"`om_{h}`" for h in scaffold.hooks)
    if rows:
        settings = (
            f"`[plugin.{scaffold.name}]` in the config file, or "
            f"`OM_PLUGIN_{scaffold.name.upper()}_<FIELD>`; `om plugins show {scaffold.name}` "
            "prints them with their current values:\n\n"
            "| setting | default | meaning |\n|---|---|---|\n" + "\n".join(rows) + "\n"
        )
    else:
        settings = "None yet: add fields to the settings model in `plugin.py`.\n"
    first = _sub("An Order Manager plugin, `@name@` (@HOOKS@): it @SUMMARY@.", scaffold)
    first = first.replace("@HOOKS@", hook_list).replace("@SUMMARY@", _summary(parts))
    settings = "\n".join(
        _fill(line) if not line.startswith("|") else line for line in settings.split("\n")
    )
    return (
        _sub(_README, scaffold)
        .replace("@FIRST@", _fill(first))
        .replace("@HOOKS_ARG@", ",".join(scaffold.hooks))
        .replace("@HOOKS@", hook_list)
        .replace("@SETTINGS@", settings)
    )


def _plugin(scaffold: Scaffold, parts: Sequence[_Hook]) -> str:
    std = sorted({line for p in parts for line in p.plugin_imports})
    sdk = sorted({n for p in parts for n in p.sdk_imports} | {"hookimpl"}, key=_isort_key)
    extra_rounding = any("round_price" in p.method for p in parts)
    imports = ""
    if std:
        imports += _imports_block(std) + "\n"
    imports += "from pydantic import BaseModel, ConfigDict"
    imports += ", Field\n\n" if any(p.settings for p in parts) else "\n\n"
    imports += _from("om_plugins", sdk)
    if extra_rounding:
        imports += "from om_plugins.rounding import round_price\n"
    settings = "".join(p.settings for p in parts)
    if settings:
        settings = "\n" + settings
    init = "".join(p.init for p in parts)
    methods = "".join(_sub(p.method, scaffold) for p in parts)
    intro = _sub('"""The ``@name@`` plugin: it ', scaffold) + _summary(parts) + "."
    usage = _sub(
        "Enable it with ``OM_PLUGINS=builtin,@name@`` and configure it in "
        "``[plugin.@name@]`` or with ``OM_PLUGIN_@NAME@_<FIELD>`` variables; ``om plugins "
        "show @name@`` prints its settings. Decision hooks must be quick, synchronous and "
        "pure: no I/O, no state that changes their answer.",
        scaffold,
    )
    first = "\n\n".join(_fill(paragraph) for paragraph in (intro, usage))
    text = _sub(_PLUGIN, scaffold)
    return (
        text.replace("@IMPORTS@", imports)
        .replace("@SETTINGS@", settings)
        .replace("@INIT@", init)
        .replace("@METHODS@", methods)
        .replace("@FIRST@", first)
    )


def _tests(scaffold: Scaffold, parts: Sequence[_Hook]) -> str:
    std = sorted({line for p in parts for line in p.test_std_imports})
    sdk = sorted({n for p in parts for n in p.test_sdk_imports}, key=_isort_key)
    kit = sorted({n for p in parts for n in p.test_kit_imports} | {"EngineHarness"}, key=_isort_key)
    imports = ""
    if std:
        imports += _imports_block(std) + "\n"
    unit = "".join(_sub(p.unit_tests, scaffold) for p in parts)
    classes = [f"{scaffold.class_prefix}Plugin"]
    if f"{scaffold.class_prefix}Settings(" in unit:
        classes.append(f"{scaffold.class_prefix}Settings")
    imports += _from(scaffold.package, classes)
    imports += "\n"
    if sdk:
        imports += _from("om_plugins", sdk)
    imports += _from("om_plugins.testing", kit)
    entries = [e for p in parts for e in p.engine_settings]
    if entries:
        inline = "{" + ", ".join(entries) + "}"
        setting_line = f'    settings = {{"{scaffold.name}": {inline}}}\n'
        if len(setting_line) > 101:
            body = "".join(f"            {e},\n" for e in entries)
            setting_line = (
                f'    settings = {{\n        "{scaffold.name}": {{\n{body}        }}\n    }}\n'
            )
        harness = (
            setting_line + f'    with EngineHarness(plugins=["builtin", "{scaffold.name}"], '
            "settings=settings) as harness:\n"
        )
    else:
        harness = f'    with EngineHarness(plugins=["builtin", "{scaffold.name}"]) as harness:\n'
    engine = "".join(_sub(p.engine_test, scaffold) for p in parts)
    text = _sub(_TESTS, scaffold)
    return (
        text.replace("@IMPORTS@", imports)
        .replace("@UNIT@", unit)
        .replace("@HARNESS@", harness)
        .replace("@ENGINE@", engine)
    )


def write(scaffold: Scaffold, directory: Path) -> list[Path]:
    """Write the package into ``directory``, which must not exist or be empty."""
    if directory.exists() and any(directory.iterdir()):
        raise ScaffoldError(f"{directory} exists and is not empty; choose another --dir")
    written = []
    for relative, text in scaffold.files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


_PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "@dist@"
version = "0.1.0"
description = "Order Manager plugin @name@."
requires-python = ">=3.11"
dependencies = ["order-manager"]

[project.optional-dependencies]
# pip install -e ".[test]": what the tests need next to Order Manager, whose test kit
# (om_plugins.testing) is a pytest plugin.
test = ["pytest>=8", "mypy>=1.11"]

# The engine finds plugins through this group; the name on the left is the one you enable
# with OM_PLUGINS and configure with [plugin.<name>] / OM_PLUGIN_<NAME>_<FIELD>.
[project.entry-points."order_manager.plugins"]
@name@ = "@package@:@Class@Plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
"*" = ["py.typed"]

[tool.pytest.ini_options]
testpaths = ["tests"]
# A warning is a bug that has not happened yet.
filterwarnings = ["error"]

[tool.mypy]
strict = true
mypy_path = "src"
files = ["src", "tests"]
"""

_README = """# @dist@

@FIRST@

It was made with `om plugins new @name@ --hooks @HOOKS_ARG@`: change the rules in
`src/@package@/plugin.py`, and the tests in `tests/test_plugin.py` with them. The hooks, the
decision context and the test kit are described in Order Manager's `docs/plugins.md`.

## Install, test, enable

```sh
pip install -e ".[test]"        # into the environment Order Manager runs in
python -m pytest                # the hooks one by one, then through the real engine
mypy                            # strict: om_plugins ships its types
OM_PLUGINS=builtin,@name@ om plugins show @name@
OM_PLUGINS=builtin,@name@ om run
```

or in the config file: `plugins = ["builtin", "@name@"]`.

## Settings

@SETTINGS@"""

_INIT = '''"""Order Manager plugin ``@name@``; see ``plugin.py``."""

from __future__ import annotations

from @package@.plugin import @Class@Plugin, @Class@Settings

__all__ = ["@Class@Plugin", "@Class@Settings"]
'''

_PLUGIN = '''@FIRST@
"""

from __future__ import annotations

@IMPORTS@
__all__ = ["@Class@Plugin", "@Class@Settings"]

#: The plugin API versions this plugin supports; the engine refuses to load it elsewhere.
om_api_version = ">=2,<3"


class @Class@Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a typo is an error, not ignored
@SETTINGS@

class @Class@Plugin:
    settings_model = @Class@Settings

    def __init__(self, settings: @Class@Settings | None = None) -> None:
        self.settings = settings or @Class@Settings()
@INIT@@METHODS@'''

_TESTS = '''"""The @name@ plugin: each hook on its own, then through the real engine."""

@IMPORTS@@UNIT@

def test_enabled_through_its_entry_point() -> None:
@HARNESS@@ENGINE@'''
