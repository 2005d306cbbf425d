"""docs/plugins.md documents every hook exactly as om_plugins.hookspecs declares it: a section
per hook whose heading, arguments, types, return type and call rule match the code, with an
example plugin that exists. Adding, renaming or changing a hook without its docs fails here."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import om_plugins
from om_plugins import hookspecs
from om_plugins.hookspecs import PROJECT_NAME

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
TEXT = DOCS.read_text(encoding="utf-8")

_HEADING = re.compile(r"^### `(?P<name>om_\w+)\((?P<params>[^)]*)\)`\s*$", re.M)
_ARGUMENT = re.compile(r"^- `(?P<name>\w+)` \(`(?P<type>[^`]+)`\)", re.M)
_RETURNS = re.compile(r"^\*\*Returns:\*\* `(?P<type>[^`]+)`", re.M)
_CALL_RULE = re.compile(r"^\*\*Call rule:\*\* (?P<rule>.+)$", re.M)
_EXAMPLE = re.compile(r"^\*\*Example plugin:\*\* \[[^\]]+\]\((?P<target>[^)]+)\)", re.M)


def _hookspecs() -> dict[str, Callable[..., Any]]:
    return {
        name: function
        for name, function in vars(hookspecs).items()
        if callable(function) and hasattr(function, f"{PROJECT_NAME}_spec")
    }


SPECS = _hookspecs()


def _sections() -> dict[str, tuple[str, str]]:
    """Hook name → (documented parameter list, section text up to the next heading)."""
    found: dict[str, tuple[str, str]] = {}
    matches = list(_HEADING.finditer(TEXT))
    for match in matches:
        rest = TEXT[match.end() :]
        end = re.search(r"^#{2,3} ", rest, re.M)
        body = rest[: end.start()] if end else rest
        assert match["name"] not in found, f"{match['name']} is documented twice"
        found[match["name"]] = (match["params"], body)
    return found


SECTIONS = _sections()


def test_every_hook_is_documented_and_nothing_else() -> None:
    assert len(SPECS) >= 8
    assert sorted(SECTIONS) == sorted(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_documented_signature_matches_the_hookspec(name: str) -> None:
    signature = inspect.signature(SPECS[name])
    params, body = SECTIONS[name]
    assert params == ", ".join(signature.parameters), f"heading of {name}"

    documented = {m["name"]: m["type"] for m in _ARGUMENT.finditer(body)}
    expected = {p.name: str(p.annotation) for p in signature.parameters.values()}
    assert documented == expected, f"arguments of {name}"
    if not expected:
        assert "**Arguments:** none." in body

    returns = _RETURNS.search(body)
    assert returns is not None, f"{name} documents no return type"
    assert returns["type"] == str(signature.return_annotation)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_documented_call_rule_matches_the_hookspec(name: str) -> None:
    _, body = SECTIONS[name]
    rule = _CALL_RULE.search(body)
    assert rule is not None, f"{name} documents no call rule"
    opts = getattr(SPECS[name], f"{PROJECT_NAME}_spec")
    returns = str(inspect.signature(SPECS[name]).return_annotation)
    if opts["firstresult"]:
        expected = "first non-None result wins"
    elif "Rejection" in returns:
        expected = "every plugin votes"
    elif name == "om_order_event":
        expected = "observer"
    else:
        expected = "every plugin is called"
    assert rule["rule"].startswith(expected), f"{name}: {rule['rule']!r}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_hook_links_an_existing_example_plugin_and_shows_code(name: str) -> None:
    _, body = SECTIONS[name]
    example = _EXAMPLE.search(body)
    assert example is not None, f"{name} links no example plugin"
    target = (DOCS.parent / example["target"]).resolve()
    assert target.exists(), example["target"]
    assert target.is_relative_to(DOCS.parents[1] / "examples") or target.is_relative_to(
        DOCS.parents[1] / "plugins_builtin"
    )
    if target.is_file():
        assert name in target.read_text(encoding="utf-8"), f"{target} does not implement {name}"
    code = re.findall(r"```python\n(.*?)```", body, re.S)
    assert code, f"{name} has no code example"
    params = ", ".join(["self", *inspect.signature(SPECS[name]).parameters])
    assert any(f"def {name}({params})" in block for block in code), f"{name}: def line"


def test_python_examples_in_the_docs_are_valid_python() -> None:
    blocks = re.findall(r"```python\n(.*?)```", TEXT, re.S)
    assert len(blocks) >= 8
    for block in blocks:
        ast.parse(block)


def test_every_relative_link_resolves() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", TEXT):
        if "://" in target:
            continue
        assert (DOCS.parent / target).exists(), target


def test_api_version_is_documented() -> None:
    assert om_plugins.__api_version__ == "2.0.0"
    assert f'`"{om_plugins.__api_version__}"`' in TEXT
    assert 'om_api_version = ">=2,<3"' in TEXT


def test_configuration_time_budget_scaffold_and_context_are_documented() -> None:
    for heading in ("## Configuration", "## Time budget", "## The decision context"):
        assert f"\n{heading}\n" in TEXT, heading
    for phrase in (
        "om plugins new",
        "om plugins show",
        "OM_HOOK_BUDGET_MS",
        "om_plugin_hook_duration_seconds",
        "OM_TRADING_DAY_START",
        "[plugin.<name>]",
        "did you mean",
        "set_time",
        "advance_time",
        "set_open_order",
        "`fees` (2.0)",
        "`leverage` (2.0)",
        "`today` (2.0)",
    ):
        assert phrase in TEXT, phrase


def test_the_sizing_hook_documents_what_sizing_finds_in_the_context() -> None:
    doc = hookspecs.om_calculate_quantity.__doc__ or ""
    for name in (
        "min_qty",
        "max_qty",
        "max_market_qty",
        "min_notional",
        "qty_unit",
        "contract_size",
        "context.fees",
        "context.leverage",
        "context.today",
    ):
        assert name in doc, name
    module = hookspecs.__doc__ or ""
    assert "worker thread" in module and "OM_HOOK_BUDGET_MS" in module


def test_the_api_reference_has_the_preview_route_and_its_body() -> None:
    api = (DOCS.parent / "api.md").read_text(encoding="utf-8")
    assert "| `POST /api/v1/orders/preview` | trade |" in api
    section = api.split("### `POST /api/v1/orders/preview`", 1)[1]
    assert '"would_send"' in section and '"rejections"' in section
    assert '{"signal_id": "preview-1", "symbol": "BTCUSDT"' in section
