"""Issue 14, observation 9 (startup half): everything that can be validated is validated
before any consumer starts; ``om run`` exits 2 with one line per problem; no secret is
printed in clear, query parameters included."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from om_core.cli import _banner
from om_core.config import load_settings, mask_url
from om_core.logs import SecretFilter
from om_core.service import Service, StartupConfigError
from om_core.startup import check_settings
from tests.test_run import _clean_env, _free_port, _wait_http, om

GOOD_KEY = "startup-test-key-0001"


@pytest.mark.parametrize(
    "keys",
    ["sha256:" + "a" * 63 + ":trade", "sha256:xyz", "k1:Trade", "a-long-enough-key-1:write", "k1"],
)
def test_a_malformed_key_stops_om_run_before_anything_starts(tmp_path: Path, keys: str) -> None:
    env = _clean_env(OM_API_KEYS=keys, OM_API_PORT=str(_free_port()))
    proc = om(tmp_path, env, "run")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: OM_API_KEYS: "), lines
    assert keys not in proc.stderr
    assert "running" not in proc.stdout
    assert not (tmp_path / "order_manager.db").exists()  # not even the database was touched


@pytest.mark.parametrize("plugin_problem", ["credentials", "setting"])
def test_every_problem_at_once_one_line_each_nothing_started(
    tmp_path: Path, plugin_problem: str
) -> None:
    env = _clean_env(
        OM_DATABASE_URL="postgresql+asyncpg://om@/om?password=hunter2-db-secret",
        OM_BROKER_URL="amqp://guest:hunter2-mq-secret@:5672/",
        OM_API_HOST="0.0.0.0",  # noqa: S104 - a configuration being refused
    )
    if plugin_problem == "credentials":
        env["OM_EXCHANGE"] = "bybit"  # without OM_BYBIT_API_KEY/SECRET
        expected_plugin_line = "OM_EXCHANGE=bybit needs OM_BYBIT_API_KEY and OM_BYBIT_API_SECRET"
    else:
        # A plugin that does not load cannot build the exchange: its problems come alone.
        env["OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL"] = "lots"
        expected_plugin_line = "(OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL): Input should be a valid"
    proc = om(tmp_path, env, "run")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    for expected in (
        "OM_DATABASE_URL: names no host, as in postgresql+asyncpg://user@host:5432/db "
        "(got postgresql+asyncpg://om@/om?password=***)",
        "OM_BROKER_URL: names no host, as in amqp://user@host:5672/vhost "
        "(got amqp://guest:***@:5672/)",
        "OM_API_HOST=0.0.0.0 exposes the API beyond this machine but OM_API_KEYS is empty",
        expected_plugin_line,
    ):
        assert sum(expected in line for line in lines) == 1, (expected, lines)
    assert len(lines) == 4, lines
    assert "hunter2" not in proc.stderr and "hunter2" not in proc.stdout
    assert "running" not in proc.stdout


async def test_the_service_starts_nothing_when_a_check_fails(tmp_path: Path) -> None:
    settings = load_settings(
        env={
            "OM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'om.db'}",
            "OM_BROKER_URL": "amqp://guest:guest@:5672/",
            "OM_EXCHANGE": "bybit",
        }
    )
    service = Service(settings, env={})
    with pytest.raises(StartupConfigError) as info:
        await service.start()
    [broker, bybit] = str(info.value).splitlines()
    assert broker.startswith("OM_BROKER_URL: names no host") and "OM_BYBIT_API_KEY" in bybit
    assert not hasattr(service, "db") and not hasattr(service, "bus")
    assert not service._consumers and not service.running
    await service.stop()
    assert not (tmp_path / "om.db").exists()


def test_settings_checks_name_the_setting_and_mask_it() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    ok = load_settings(env={"OM_API_KEYS": f"{GOOD_KEY}:trade,sha256:{digest}"})
    assert check_settings(ok, serving_api=True) == []
    bad_port = load_settings(env={"OM_BROKER_URL": "amqp://u:p4ss-word@host:notaport/"})
    [problem] = check_settings(bad_port)
    assert problem.startswith("OM_BROKER_URL: not a URL") and "p4ss-word" not in problem
    exposed = load_settings(env={"OM_API_HOST": "10.1.2.3"})
    assert check_settings(exposed) == []  # tools that do not serve the API
    assert "exposes the API" in check_settings(exposed, serving_api=True)[0]


def test_query_parameter_secrets_are_masked_in_banner_and_logs() -> None:
    url = "postgresql+asyncpg://om@db:5432/om?sslmode=require&password=hunter2&sslpassword=pw2"
    assert mask_url(url) == (
        "postgresql+asyncpg://om@db:5432/om?sslmode=require&password=***&sslpassword=***"
    )
    assert mask_url("amqp://u:pw@mq/?token=t0k3n&heartbeat=30") == (
        "amqp://u:***@mq/?token=***&heartbeat=30"
    )
    settings = load_settings(
        env={"OM_DATABASE_URL": url, "OM_BROKER_URL": "amqp://u:pw@mq/?token=t0k3n"}
    )
    banner = _banner(settings)
    assert "hunter2" not in banner and "pw2" not in banner and "t0k3n" not in banner
    assert "password=***" in banner and "token=***" in banner

    scrub = SecretFilter().scrub
    scrubbed = scrub(f"cannot connect to {url}: refused")
    assert "hunter2" not in scrubbed and "pw2" not in scrubbed
    assert scrubbed.startswith(f"cannot connect to {mask_url(url)}")


def test_om_run_prints_no_query_password(pg_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = _clean_env(
        OM_DATABASE_URL=f"{pg_url}?password=hunter2-in-query",
        OM_DB_AUTO_MIGRATE="true",
        OM_API_PORT=str(port),
        OM_API_KEYS=f"{GOOD_KEY}:trade",
        OM_LOG_LEVEL="DEBUG",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "om_core.cli", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/health", proc).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "?password=***" in out
    assert "hunter2" not in out and "hunter2" not in err
