"""Run the ``om`` command in a subprocess, as a user would, with no ``OM_*`` settings but
the ones a test gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.sdk.installs import clean_env


def om(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "om_core.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(**env),
        check=False,
    )
