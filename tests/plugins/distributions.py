"""Install throwaway plugin distributions on ``sys.path`` the way pip would: a module plus
a ``.dist-info`` folder whose ``entry_points.txt`` names it in ``order_manager.plugins``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


def install_plugin_dist(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    dist: str,
    entry_points: dict[str, str],
    modules: dict[str, str],
    version: str = "0.1.0",
) -> Path:
    site = root / f"site-{dist}"
    site.mkdir(parents=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[order_manager.plugins]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    for name in modules:
        sys.modules.pop(name, None)
    return site
