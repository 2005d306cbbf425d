"""Done-when: a new plugin made from examples/plugin-template — copied, renamed, installed
with pip into the service's environment and enabled by name — changes what the service does
with a signal."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from tests.sdk.installs import EXAMPLES, clean_env, installed, is_installed

TEMPLATE = EXAMPLES / "plugin-template"


def _om(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "om_core.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(**env),
        check=False,
    )


def _new_plugin_from_template(root: Path, suffix: str) -> tuple[str, str, Path]:
    """Copy the template and rename distribution, package and entry point, as the template's
    README says. Returns (entry-point name, distribution, project path)."""
    name, dist, package = f"flow_{suffix}", f"om-plugin-flow-{suffix}", f"om_plugin_flow_{suffix}"
    project = root / dist
    shutil.copytree(
        TEMPLATE,
        project,
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache", "build"),
    )
    (project / "src" / "om_plugin_template").rename(project / "src" / package)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    text = text.replace('name = "om-plugin-template"', f'name = "{dist}"')
    text = text.replace(
        'template = "om_plugin_template:TemplatePlugin"', f'{name} = "{package}:TemplatePlugin"'
    )
    pyproject.write_text(text)
    test_file = project / "tests" / "test_plugin.py"
    source = test_file.read_text().replace("om_plugin_template", package)
    source = source.replace('"template"', f'"{name}"')
    test_file.write_text(source)
    assert "template" not in pyproject.read_text().split("[project.entry-points")[1]
    return name, dist, project


def test_a_plugin_made_from_the_template_changes_the_outcome(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    name, dist, project = _new_plugin_from_template(tmp_path, suffix)
    signals = tmp_path / "signals.jsonl"
    signals.write_text(
        "\n".join(
            json.dumps(s)
            for s in (
                {"signal_id": "flow-1", "symbol": "BTCUSDT", "side": "buy", "qty": "0.002"},
                {"signal_id": "flow-2", "symbol": "ETHUSDT", "side": "buy", "qty": "0.05"},
            )
        )
        + "\n"
    )
    settings = {f"OM_PLUGIN_{name.upper()}_BLOCKED_SYMBOLS": '["BTCUSDT"]'}

    with installed([(dist, project)]):
        listing = _om("plugins", "list", "--hooks", cwd=tmp_path, OM_PLUGINS=f"builtin,{name}")
        assert listing.returncode == 0, listing.stderr
        row = next(line for line in listing.stdout.splitlines() if line.startswith(name))
        assert f"{dist} 0.1.0" in row and " yes " in row and "om_check_signal" in row

        before = _om("replay", str(signals), cwd=tmp_path, **settings)
        after = _om("replay", str(signals), cwd=tmp_path, OM_PLUGINS=f"builtin,{name}", **settings)
        assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
        assert before.stdout.splitlines()[1:] == [
            "flow-1     placed   buy   market  0.002  -      -",
            "flow-2     placed   buy   market  0.05   -      -",
        ]
        assert after.stdout.splitlines()[1:] == [
            f"flow-1     rejected  buy   -       -     -      {name}:SYMBOL_BLOCKED",
            "flow-2     placed    buy   market  0.05  -      -",
        ]

        # The copy's own tests pass against the installed copy.
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
            check=False,
        )
        assert tests.returncode == 0, tests.stdout + tests.stderr

    assert not is_installed(dist)
