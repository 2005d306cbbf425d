"""The image's install step without a container (no container engine runs on the CI
machine): ``scripts/build-venv.sh`` — what the Dockerfile's build stage runs — builds the
wheel and installs it into a fresh virtualenv; then that virtualenv's ``om`` answers
``--help``, migrates a PostgreSQL database, and ``om run`` answers ``/health`` and ``/ready``
and stops on SIGTERM. Nothing of the source tree is importable there: the wheel must carry
the migrations, the built-in plugins and the API.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.artefacts import ROOT
from tests.services import fresh_pg_database, fresh_vhost

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    """No OM_* of the test run, no path back into the source tree."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OM_", "PYTHON", "VIRTUAL_ENV")) and k != "PATH"
    }
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return {**env, **extra}


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return int(response.status)
    except OSError:
        return 0


def test_wheel_in_a_fresh_virtualenv_migrates_and_serves(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # The interpreter of this test run builds (it has the pinned setuptools and wheel), so no
    # build environment has to be installed first; the target virtualenv is brand new.
    build = subprocess.run(
        ["sh", str(ROOT / "scripts" / "build-venv.sh"), str(venv)],
        env=_clean_env(PYTHON=sys.executable, BUILD_PYTHON=sys.executable, COMPILE="0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    om = venv / "bin" / "om"

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import om_core, migrations; print(om_core.__file__)"],
        env=_clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout

    helped = subprocess.run(
        [str(om), "--help"], env=_clean_env(), cwd=tmp_path, capture_output=True, text=True
    )
    assert helped.returncode == 0, helped.stderr
    for command in ("run", "ws-gateway", "db", "health"):
        assert command in helped.stdout

    with fresh_pg_database() as db_url, fresh_vhost() as amqp_url:
        # Secrets the way the image gets them: files.
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "database_url").write_text(db_url + "\n")
        (secrets / "broker_url").write_text(amqp_url + "\n")
        (secrets / "api_keys").write_text("install-test-key:trade\n")
        port = _free_port()
        env = _clean_env(
            OM_DATABASE_URL_FILE=str(secrets / "database_url"),
            OM_BROKER_URL_FILE=str(secrets / "broker_url"),
            OM_API_KEYS_FILE=str(secrets / "api_keys"),
            OM_API_HOST="127.0.0.1",
            OM_API_PORT=str(port),
            OM_PARTITIONS="2",
            OM_LOG_FORMAT="json",
            OM_SHUTDOWN_GRACE_SECONDS="2",
        )
        upgraded = subprocess.run(
            [str(om), "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert upgraded.returncode == 0, upgraded.stderr
        current = subprocess.run(
            [str(om), "db", "current"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert current.returncode == 0 and "none" not in current.stdout, current.stdout

        log = (tmp_path / "om.log").open("wb")
        service = subprocess.Popen(
            [str(om), "run"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 90
            while _get(f"http://127.0.0.1:{port}/ready") != 200:
                assert service.poll() is None, (tmp_path / "om.log").read_text()[-4000:]
                assert time.monotonic() < deadline, (tmp_path / "om.log").read_text()[-4000:]
                time.sleep(0.2)
            assert _get(f"http://127.0.0.1:{port}/health") == 200
            # The image's HEALTHCHECK command.
            probe = subprocess.run([str(om), "health", "--ready"], env=env, cwd=tmp_path)
            assert probe.returncode == 0
            service.send_signal(signal.SIGTERM)
            assert service.wait(timeout=30) == 0
        finally:
            if service.poll() is None:
                service.kill()
                service.wait()
            log.close()
        output = (tmp_path / "om.log").read_text()
        assert "Order Manager is running" in output
        assert "install-test-key" not in output
