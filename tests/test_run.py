"""`om run` as an operator starts it: a real process, real signals, a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from om_core.db import migrate


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any OM_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env.update(extra)
    return env


def om(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "om_core.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"om run exited early: {proc.communicate()[1]}")
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout}s")


def test_om_run_on_embedded_defaults_serves_health_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    env = _clean_env(OM_API_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "om_core.cli", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/health", proc).json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "database : sqlite+aiosqlite:///./order_manager.db" in out
    assert "broker   : memory://" in out and "exchange : paper" in out
    assert "stopped" in err
    assert (tmp_path / "order_manager.db").exists()


def test_om_run_refuses_an_unmigrated_server_database(pg_url: str, tmp_path: Path) -> None:
    env = _clean_env(OM_DATABASE_URL=pg_url, OM_API_ENABLED="false")
    proc = om(tmp_path, env, "run")
    assert proc.returncode == 1
    assert "om db upgrade" in proc.stderr

    upgrade = om(tmp_path, env, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    current = om(tmp_path, env, "db", "current")
    head = migrate.head_revision()
    assert f"current: {head}; code expects: {head}" in current.stdout


def test_om_ws_gateway_explains_what_it_needs(tmp_path: Path) -> None:
    env = _clean_env()
    proc = om(tmp_path, env, "ws-gateway")
    assert proc.returncode == 2
    assert "memory://" in proc.stderr and "--with-ws-gateway" in proc.stderr

    env.update({"OM_API_ENABLED": "false"})
    proc = om(tmp_path, env, "run", "--with-ws-gateway")
    assert proc.returncode == 2
    # The paper exchange reports through the engine itself: it has no gateway to run.
    assert "no enabled plugin provides a stream gateway for exchange 'paper'" in proc.stderr

    env.update({"OM_EXCHANGE": "bybit"})
    proc = om(tmp_path, env, "run", "--with-ws-gateway")
    assert proc.returncode == 2  # missing credentials: a configuration error
    assert "OM_BYBIT_API_KEY" in proc.stderr
