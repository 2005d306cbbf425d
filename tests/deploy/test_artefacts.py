"""The Dockerfile, compose.yaml, systemd units, Prometheus and Grafana files agree with the
code: every command is one the CLI runs, every OM_* variable one the settings read, every
secret file one that is mounted, every metric one the service exports.

Containers and systemd cannot run on the CI machine; these checks and tests/deploy/
test_install.py (the image's install step without a container) stand in for them.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from om_core import metrics
from om_core.config import Settings
from om_core.messaging.partitions import PARTITIONED_QUEUES
from tests.deploy.artefacts import (
    ROOT,
    command_problem,
    dockerfile,
    entry_points,
    env_file,
    env_pairs,
    environment_lines,
    unit_file,
    variable_problem,
)

COMPOSE = ROOT / "compose.yaml"
SYSTEMD = ROOT / "deploy" / "systemd"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "order-manager.json"
VENV = "/opt/order-manager"
DEFAULT_GRACE = Settings.model_fields["shutdown_grace_seconds"].default


def test_the_checks_themselves_can_fail() -> None:
    assert command_problem(["run"]) is None
    assert command_problem(["db", "upgrade"]) is None
    assert command_problem(["serve"]) is not None
    assert command_problem(["db"]) is not None  # a group, not a command
    assert variable_problem("OM_DATABASE_URL") is None
    assert variable_problem("OM_DATABASE_URL_FILE") is None
    assert variable_problem("OM_BYBIT_API_SECRET_FILE") is None
    assert variable_problem("OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL") is None
    assert variable_problem("OM_EXCHANGE_FILE") is not None  # not a secret
    assert variable_problem("OM_BYBIT_BASE_URL_FILE") is not None
    assert variable_problem("OM_DATABSE_URL") is not None
    assert variable_problem("OM_PLUGIN_CONFIG") is not None


# -- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_builds_in_one_stage_and_runs_only_the_runtime_non_root() -> None:
    args, stages = dockerfile()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    # A slim Python base, the same for both stages (the virtualenv's interpreter link).
    assert build.base == runtime.base
    assert "slim" in runtime.base and args.get("PYTHON_VERSION")
    # The build stage runs the install step the install test runs.
    runs = " ".join(i.args for i in build.all("RUN"))
    assert f"scripts/build-venv.sh {VENV}" in runs
    for copy in build.all("COPY"):
        *sources, _ = shlex.split(copy.args)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
    # The runtime stage takes the virtualenv and nothing else from the build.
    copies = runtime.all("COPY")
    assert [c.args for c in copies] == [f"--from={build.name} {VENV} {VENV}"]
    assert not runtime.all("RUN") or all("pip" not in r.args for r in runtime.all("RUN"))
    user = runtime.last("USER")
    assert user is not None and user.args.split(":")[0] not in {"root", "0"}


def test_dockerfile_commands_and_variables_are_the_codes() -> None:
    _, stages = dockerfile()
    runtime = stages[-1]
    entry = runtime.last("ENTRYPOINT")
    cmd = runtime.last("CMD")
    health = runtime.last("HEALTHCHECK")
    assert entry is not None and cmd is not None and health is not None
    # Exec form: om is PID 1 and receives SIGTERM itself.
    assert entry.exec_form() == ["om"]
    assert "om" in entry_points()
    assert command_problem(cmd.exec_form()) is None
    probe = health.exec_form()
    assert probe[0] == "om" and command_problem(probe[1:]) is None
    assert runtime.last("STOPSIGNAL") is not None
    assert runtime.last("STOPSIGNAL").args == "SIGTERM"  # type: ignore[union-attr]
    env: dict[str, str] = {}
    for instruction in runtime.all("ENV"):
        env |= env_pairs(instruction)
    assert env["PATH"].startswith(f"{VENV}/bin:")
    oms = {k: v for k, v in env.items() if k.startswith("OM_")}
    assert oms, "the image sets its OM_* defaults"
    for name in oms:
        assert variable_problem(name) is None, variable_problem(name)
    expose = runtime.last("EXPOSE")
    assert expose is not None and expose.args == env["OM_API_PORT"]
    # Configuration is OM_* only: no config file is baked in.
    assert not any("OM_CONFIG_FILE" in i.args for i in runtime.instructions)


def test_dockerignore_lets_every_copied_path_through() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    _, stages = dockerfile()
    for copy in stages[0].all("COPY"):
        *sources, _ = shlex.split(copy.args)
        assert set(sources) <= allowed, sources


# -- compose.yaml ------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def om_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in data["services"].items()
        if svc.get("image", "").startswith("order-manager") or "build" in svc
    }


def _secret_names(service: dict[str, Any]) -> dict[str, str]:
    """mounted path → secret name."""
    out = {}
    for item in service.get("secrets", []):
        if isinstance(item, str):
            out[f"/run/secrets/{item}"] = item
        else:
            target = item.get("target", item["source"])
            path = target if target.startswith("/") else f"/run/secrets/{target}"
            out[path] = item["source"]
    return out


def test_compose_runs_the_image_with_real_commands_and_variables() -> None:
    data = compose()
    services = om_services(data)
    assert {"migrate", "om", "ws-gateway"} <= set(services)
    commands = {name: svc["command"] for name, svc in services.items()}
    assert commands == {"migrate": ["db", "upgrade"], "om": ["run"], "ws-gateway": ["ws-gateway"]}
    for name, command in commands.items():
        assert command_problem(command) is None, name
    for name, svc in services.items():
        assert svc.get("init") is True, f"{name}: an init process passes SIGTERM on"
        env = svc.get("environment", {})
        assert isinstance(env, dict)
        mounted = _secret_names(svc)
        for key, value in env.items():
            assert variable_problem(key) is None, f"{name}: {variable_problem(key)}"
            if key.endswith("_FILE"):
                assert value in mounted, f"{name}: {key}={value} is not a mounted secret"
        # Secrets only as files: no credential in the environment itself.
        for key in env:
            assert not re.search(r"(PASSWORD|SECRET|_KEY|KEYS|_URL)$", key), f"{name}: {key}"


def test_compose_secrets_come_from_files_the_generator_writes() -> None:
    data = compose()
    generator = (ROOT / "deploy" / "secrets" / "generate.sh").read_text(encoding="utf-8")
    written = set(re.findall(r"^put (\S+) ", generator, re.M))
    for name, secret in data["secrets"].items():
        path = Path(secret["file"])
        assert path.parent == Path("deploy/secrets"), name
        assert path.name in written, f"secret {name}: generate.sh does not write {path.name}"
    for svc in data["services"].values():
        for secret in _secret_names(svc).values():
            assert secret in data["secrets"]
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8")
    assert "deploy/secrets/*" in gitignore


def test_compose_stack_shape() -> None:
    data = compose()
    services = data["services"]
    # Servers with health checks and volumes.
    for name in ("postgres", "rabbitmq"):
        assert "healthcheck" in services[name], name
        assert any(":/var/lib/" in v for v in services[name]["volumes"]), name
    # RabbitMQ with the plugin partitioning needs.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["rabbitmq"]["volumes"]}
    plugins = (ROOT / mounts["/etc/rabbitmq/enabled_plugins"]).read_text(encoding="utf-8")
    assert "rabbitmq_consistent_hash_exchange" in plugins
    # Migrations first, once; the service waits for them.
    assert services["migrate"]["restart"] == "no"
    needs = services["om"]["depends_on"]
    assert needs["migrate"] == {"condition": "service_completed_successfully"}
    assert needs["rabbitmq"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # The service scales: no container name, a port range; partitioned, graceful.
    om = services["om"]
    assert "container_name" not in om
    assert re.fullmatch(r"127\.0\.0\.1:\d+-\d+:\d+", om["ports"][0])
    env = om["environment"]
    assert int(re.sub(r"\$\{\w+:-(\d+)\}", r"\1", str(env["OM_PARTITIONS"]))) > 0
    grace = float(env.get("OM_SHUTDOWN_GRACE_SECONDS", DEFAULT_GRACE))
    assert float(om["stop_grace_period"].rstrip("s")) > grace
    # Reachable by Prometheus and the operator, so keys are required.
    assert env["OM_API_HOST"] == "0.0.0.0" and "OM_API_KEYS_FILE" in env  # noqa: S104
    # Every bind-mounted file exists.
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_prometheus_scrapes_every_instance_on_the_api_port() -> None:
    data = compose()
    port = int(data["services"]["om"]["environment"]["OM_API_PORT"])
    mounts = [v.split(":") for v in data["services"]["prometheus"]["volumes"]]
    config_path = next(src for src, dst, *_ in mounts if dst.endswith("prometheus.yml"))
    config = yaml.safe_load((ROOT / config_path).read_text(encoding="utf-8"))
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "order-manager"]
    assert job["metrics_path"] == "/metrics"
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["om"] and sd["port"] == port


def _exported_series() -> set[str]:
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def test_grafana_is_provisioned_with_the_dashboard_of_the_services_series() -> None:
    data = compose()
    grafana = data["services"]["grafana"]
    mounts = {dst: src for src, dst, *_ in (v.split(":") for v in grafana["volumes"])}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "order-manager.yaml").read_text(encoding="utf-8")
    )["providers"]
    [provider] = providers
    assert provider["options"]["path"] in mounts
    assert (ROOT / mounts[provider["options"]["path"]] / DASHBOARD.name).exists()
    datasources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yaml").read_text(encoding="utf-8")
    )["datasources"]
    uids = {d["uid"] for d in datasources}

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = _exported_series()
    used: set[str] = set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for panel in panels:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            series = set(re.findall(r"\bom_[a-z_]+\b", target["expr"]))
            assert series or "up{" in target["expr"], panel["title"]
            assert series <= exported, f"{panel['title']}: {series - exported}"
            used |= series
    # Every family the service exports is on the dashboard somewhere.
    families = {f.name for f in metrics.REGISTRY.collect()}
    shown = {f for f in families if any(u == f or u.startswith(f + "_") for u in used)}
    assert shown == families, families - shown


# -- systemd --------------------------------------------------------------------------------


UNITS = {
    "order-manager@.service": ["run"],
    "order-manager-ws-gateway.service": ["ws-gateway"],
    "order-manager-migrate.service": ["db", "upgrade"],
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_units_run_real_commands_with_real_variables(name: str) -> None:
    unit = unit_file(SYSTEMD / name)
    service = unit["Service"]
    [exec_start] = service["ExecStart"]
    binary, *argv = shlex.split(exec_start)
    assert binary == f"{VENV}/bin/om" and "om" in entry_points()
    assert argv == UNITS[name]
    assert command_problem(argv) is None
    env = environment_lines(service.get("Environment", []))
    credentials = {v.split(":", 1)[0] for v in service.get("LoadCredential", [])}
    for key, value in env.items():
        assert variable_problem(key) is None, variable_problem(key)
        if key.endswith("_FILE"):
            # Secrets as systemd credentials: %d is the unit's credentials directory.
            assert value.startswith("%d/") and value[3:] in credentials, key
    assert not any(re.search(r"(SECRET|_KEY|KEYS|_URL)$", k) for k in env), env
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{name}: {key}={service.get(key)}"
    for path in service["EnvironmentFile"]:
        assert path.lstrip("-").startswith("/etc/order-manager/")


def test_systemd_service_stops_gracefully_and_migrations_are_a_step_of_their_own() -> None:
    for name in ("order-manager@.service", "order-manager-ws-gateway.service"):
        service = unit_file(SYSTEMD / name)["Service"]
        assert service["KillSignal"] == ["SIGTERM"]
        assert float(service["TimeoutStopSec"][0]) > DEFAULT_GRACE
        assert "WantedBy" in unit_file(SYSTEMD / name)["Install"]
    migrate = unit_file(SYSTEMD / "order-manager-migrate.service")
    assert migrate["Service"]["Type"] == ["oneshot"]
    assert "Install" not in migrate  # started by hand, never pulled in
    service = unit_file(SYSTEMD / "order-manager@.service")
    assert not any("migrate" in v for vs in service["Unit"].values() for v in vs)
    # The template's instance is the API port.
    assert "OM_API_PORT=%i" in service["Service"]["Environment"]


def test_systemd_environment_file_example_holds_real_settings_only() -> None:
    env = env_file(SYSTEMD / "om.env.example")
    for key in env:
        assert variable_problem(key) is None, variable_problem(key)
        assert not key.endswith("_FILE") and "OM_API_PORT" != key
    assert not any(re.search(r"(SECRET|_KEY|KEYS|_URL)$", k) for k in env)


# -- docs ---------------------------------------------------------------------------------------


def test_deploy_guide_is_linked_and_names_only_real_variables_and_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/deploy.md" in readme
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name in set(re.findall(r"\bOM_[A-Z0-9_]*[A-Z0-9]\b", guide)):
        if name.startswith("OM_PLUGIN_<") or name in {"OM_BYBIT_", "OM_PLUGIN_"}:
            continue
        assert variable_problem(name) is None, variable_problem(name)
    for command in re.findall(r"\bom ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", guide):
        words = command.split()
        assert command_problem(words) is None or command_problem(words[:1]) is None, command
    # The measured capacity table, with the commands that measured it.
    assert "python -m bench.signal_to_order --instances" in guide
    for queue in PARTITIONED_QUEUES:
        assert queue in guide
