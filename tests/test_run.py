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
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env["OM_API_PORT"] = str(port)
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env.update({"OM_DATABASE_URL": pg_url, "OM_API_ENABLED": "false"})
    proc = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "om db upgrade" in proc.stderr

    upgrade = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    current = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "db", "current"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "current: 0003" in current.stdout


def test_om_ws_gateway_explains_what_it_needs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "ws-gateway"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "memory://" in proc.stderr and "--with-ws-gateway" in proc.stderr

    env.update({"OM_API_ENABLED": "false"})
    proc = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "run", "--with-ws-gateway"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "OM_BYBIT_API_KEY" in proc.stderr
