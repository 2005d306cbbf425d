"""Every example plugin package installs with pip next to Order Manager and passes its own
tests, which use nothing but ``om_plugins`` and ``om_plugins.testing``."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sdk.installs import EXAMPLES, clean_env, installed

PACKAGES = sorted(p.parent for p in EXAMPLES.glob("*/pyproject.toml"))


def _distribution(path: Path) -> str:
    return str(tomllib.loads((path / "pyproject.toml").read_text())["project"]["name"])


@pytest.fixture(scope="module")
def examples_installed() -> Iterator[None]:
    with installed([(_distribution(path), path) for path in PACKAGES]):
        yield


def test_the_examples_are_the_ones_documented() -> None:
    assert [p.name for p in PACKAGES] == [
        "audit-log",
        "order-type-post-only",
        "plugin-template",
        "risk-trading-hours",
        "sizing-volatility",
    ]


@pytest.mark.parametrize("path", PACKAGES, ids=[p.name for p in PACKAGES])
def test_example_package_is_complete(path: Path) -> None:
    project = tomllib.loads((path / "pyproject.toml").read_text())
    assert "order-manager" in project["project"]["dependencies"]
    assert "pytest>=8" in project["project"]["optional-dependencies"]["test"]
    (entry_point,) = project["project"]["entry-points"]["order_manager.plugins"].items()
    name, _target = entry_point
    readme = (path / "README.md").read_text()
    assert "pip install -e" in readme
    assert f"OM_PLUGINS=builtin,{name}" in readme
    assert "[plugins." not in readme  # the settings tables are [plugin.<name>]
    assert list((path / "tests").glob("test_*.py"))
    for source_file in [*(path / "tests").glob("test_*.py"), *(path / "src").rglob("*.py")]:
        source = source_file.read_text()
        # An author's code depends on the public SDK only, never on the engine's internals.
        assert "om_core" not in source and "plugins_builtin" not in source, source_file
        assert "tests." not in source, source_file
        if source_file.name.startswith("test_"):
            # ...nor on the harness's internals or anyone's private attributes.
            assert not re.search(r"harness\.(service|_)|(?<!self)\._[a-z]", source), source_file


@pytest.mark.parametrize("path", PACKAGES, ids=[p.name for p in PACKAGES])
def test_example_tests_pass_once_installed(examples_installed: None, path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
