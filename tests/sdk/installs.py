"""pip-install plugin packages into this interpreter's environment — the way a quant team
installs theirs next to Order Manager — and take them out again.

Installs change the shared environment, so they happen under a lock per environment (other
test runs on the machine wait), and tests uninstall what they installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

_LOCK = Path(tempfile.gettempdir()) / (
    "om-sdk-pip-" + hashlib.sha256(sys.prefix.encode()).hexdigest()[:12] + ".lock"
)


@contextmanager
def environment_lock() -> Iterator[None]:
    """Serialize installs into this environment across processes."""
    with open(_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without ``OM_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env.update(extra)
    return env


def _build_args() -> list[str]:
    # An editable build needs setuptools >= 70.1 or the `wheel` package; without them in this
    # environment, pip builds in an isolated one (setuptools from the package index).
    import setuptools

    major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None:
        return ["--no-build-isolation"]
    return []


def pip(*args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def is_installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@contextmanager
def installed(projects: Sequence[tuple[str, Path]]) -> Iterator[None]:
    """Install ``(distribution, path)`` projects editable, without dependencies (Order
    Manager is already here); uninstall on exit the ones that were not installed before."""
    with environment_lock():
        fresh = [dist for dist, _ in projects if not is_installed(dist)]
        try:
            editable = [arg for _, path in projects for arg in ("-e", str(path))]
            pip("install", "--quiet", "--no-deps", *_build_args(), *editable)
            importlib.invalidate_caches()
            yield
        finally:
            if fresh:
                pip("uninstall", "--yes", *fresh)
            importlib.invalidate_caches()
