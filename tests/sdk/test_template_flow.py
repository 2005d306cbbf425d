"""Done-when: a new plugin made with ``om plugins new`` — installed with pip into the service's
environment and enabled by name — changes what the service does with a signal, and its own
tests pass (without a warning) and type-check strictly, as generated."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from om_core.scaffold import HOOKS
from tests.sdk.cli import om
from tests.sdk.installs import clean_env, installed, is_installed


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(),
        check=False,
    )


def test_a_plugin_made_with_om_plugins_new_works_out_of_the_box(tmp_path: Path) -> None:
    name = f"flow_{uuid.uuid4().hex[:8]}"
    made = om("plugins", "new", name, "--hooks", ",".join(HOOKS), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    dist = f"om-{name.replace('_', '-')}"
    project = tmp_path / dist
    assert f"created {project}" in made.stdout
    assert (project / "src" / f"om_{name}" / "py.typed").exists()

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
        listing = om("plugins", "list", "--hooks", cwd=tmp_path, OM_PLUGINS=f"builtin,{name}")
        assert listing.returncode == 0, listing.stderr
        row = next(line for line in listing.stdout.splitlines() if line.startswith(name))
        assert f"{dist} 0.1.0" in row and " yes " in row
        assert all(f"om_{hook}" in row for hook in HOOKS), row

        before = om("replay", str(signals), cwd=tmp_path)
        assert before.returncode == 0, before.stderr
        assert before.stdout.splitlines()[1:] == [
            "flow-1     placed   buy   market  0.002  -      -",
            "flow-2     placed   buy   market  0.05   -      -",
        ]
        # Its settings while it is not enabled: refused, not silently ignored.
        unused = om("replay", str(signals), cwd=tmp_path, **settings)
        assert unused.returncode == 2
        assert f"sets plugin {name!r}, which is not enabled" in unused.stderr

        after = om("replay", str(signals), cwd=tmp_path, OM_PLUGINS=f"builtin,{name}", **settings)
        assert after.returncode == 0, after.stderr
        assert after.stdout.splitlines()[1:] == [
            f"flow-1     rejected  buy   -       -     -      {name}:SYMBOL_BLOCKED",
            "flow-2     placed    buy   market  0.05  -      -",
        ]

        # Its own tests pass against the installed copy, without a single warning...
        tests = _run("pytest", "-q", "-p", "no:cacheprovider", cwd=project)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert f"{len(HOOKS) + 1} passed" in tests.stdout and "warning" not in tests.stdout
        # ...and it type-checks strictly against om_plugins (py.typed).
        typed = _run("mypy", cwd=project)
        assert typed.returncode == 0, typed.stdout + typed.stderr
        assert "Success: no issues found in 3 source files" in typed.stdout

    assert not is_installed(dist)
