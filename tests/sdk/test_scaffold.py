"""``om plugins new``: what it writes, and that examples/plugin-template is exactly that."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from om_core.scaffold import HOOKS, ScaffoldError, render
from tests.sdk.cli import om
from tests.sdk.installs import EXAMPLES

TEMPLATE = EXAMPLES / "plugin-template"


def _files(root: Path) -> dict[str, str]:
    skip = {"__pycache__", ".pytest_cache", ".mypy_cache", "build"}
    return {
        str(path.relative_to(root)): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not skip & set(path.relative_to(root).parts)
        and not any(part.endswith(".egg-info") for part in path.parts)
    }


def test_the_template_example_is_what_om_plugins_new_writes() -> None:
    # Regenerate with: om plugins new template --dir examples/plugin-template (emptied first)
    assert _files(TEMPLATE) == render("template").files


@pytest.mark.parametrize("hook", list(HOOKS))
def test_every_hook_alone_gives_a_complete_package(hook: str) -> None:
    scaffold = render("solo", [hook])
    files = scaffold.files
    assert set(files) == {
        "pyproject.toml",
        "README.md",
        "src/om_solo/__init__.py",
        "src/om_solo/py.typed",
        "src/om_solo/plugin.py",
        "tests/test_plugin.py",
    }
    for path, text in files.items():
        if path.endswith(".py"):
            ast.parse(text)
    assert f"def om_{hook}(" in files["src/om_solo/plugin.py"]
    assert 'test = ["pytest>=8", "mypy>=1.11"]' in files["pyproject.toml"]
    assert 'solo = "om_solo:SoloPlugin"' in files["pyproject.toml"]


def test_names_and_hooks_are_checked() -> None:
    with pytest.raises(ScaffoldError, match="lower-case letters"):
        render("Quant-Risk")
    with pytest.raises(ScaffoldError, match="unknown hook"):
        render("quant_risk", ["check_signal", "check_signals"])
    assert render("quant_risk", ["om_check_order", "check_signal"]).hooks == (
        "check_signal",
        "check_order",
    )


def test_om_plugins_new_refuses_mistakes_with_exit_code_2(tmp_path: Path) -> None:
    made = om("plugins", "new", "my_plugin", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "om-my-plugin" / "src" / "om_my_plugin" / "plugin.py").exists()
    again = om("plugins", "new", "my_plugin", cwd=tmp_path)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
    wrong = om("plugins", "new", "other", "--hooks", "check_sigal", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "unknown hook(s) check_sigal; choose from check_signal," in wrong.stderr
