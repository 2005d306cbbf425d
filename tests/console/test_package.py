"""The console ships inside the package: a built wheel holds its templates and assets, the
vendored libraries with their licences, and nothing is fetched from elsewhere."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from api.console.render import STATIC_DIR, TEMPLATES

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_console(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
            "--disable-pip-version-check", "--wheel-dir", str(tmp_path), str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("order_manager-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"api/console/templates/{name}" for name in TEMPLATES.list_templates()} | {
        f"api/console/static/{path.relative_to(STATIC_DIR).as_posix()}"
        for path in STATIC_DIR.rglob("*")
        if path.is_file()
    }
    assert "api/console/static/vendor/LICENSE-uPlot.txt" in expected
    assert "api/console/static/vendor/LICENSE-htmx.txt" in expected
    assert expected <= names, sorted(expected - names)


def test_pages_load_nothing_from_another_host() -> None:
    for path in (STATIC_DIR.parent / "templates").glob("*.html"):
        text = path.read_text()
        for url in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert url.startswith(("/", "#", "data:", "{{")), f"{path.name}: {url}"
