"""The ``om`` command: run the service, manage the database, inspect plugins, and the
developer tools (replay, order preview, signal send) whose logic lives in
:mod:`om_core.tools`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from om_core.config import ConfigError, Settings, load_settings, url_secrets
from om_core.logs import configure_logging
from om_core.secret_files import secrets_in_files

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI


__all__ = ["main"]

log = logging.getLogger("om")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, _secrets(settings))
    code: int = args.func(settings, args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="om", description="Order Manager")
    parser.add_argument("--config", help="TOML config file (or OM_CONFIG_FILE)")
    sub = parser.add_subparsers()

    run = sub.add_parser("run", help="run the service (consumers, API, exchange)")
    run.add_argument(
        "--with-ws-gateway",
        action="store_true",
        help="also forward the exchange's private order stream to ws-gateway.order "
        "(the gateway of OM_EXCHANGE's plugin, e.g. bybit)",
    )
    run.set_defaults(func=_cmd_run)

    gateway = sub.add_parser(
        "ws-gateway",
        help="forward OM_EXCHANGE's private order stream (e.g. Bybit's order and execution "
        "topics) to ws-gateway.order",
    )
    gateway.set_defaults(func=_cmd_ws_gateway)

    health = sub.add_parser(
        "health",
        help="probe this host's `om run` API: exit 0 when /health (or /ready) answers 200",
        description=(
            "For container and service-manager health checks. Asks http://127.0.0.1:"
            "OM_API_PORT/health (liveness; with --ready, /ready: database, broker, consumers "
            "and coordination up). Needs no API key."
        ),
    )
    health.add_argument("--ready", action="store_true", help="ask /ready instead of /health")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    health.set_defaults(func=_cmd_health)

    plugins = sub.add_parser("plugins", help="plugin commands")
    plugins_sub = plugins.add_subparsers()
    plist = plugins_sub.add_parser("list", help="every discovered plugin")
    plist.add_argument("--hooks", action="store_true", help="show hooks in call order")
    plist.set_defaults(func=_cmd_plugins_list)
    pshow = plugins_sub.add_parser(
        "show",
        help="a plugin's settings: schema, defaults and the values in effect",
        description=(
            "Prints every setting of the plugin with its type, default, variable and the "
            "value the configuration gives it (secrets masked), and where the value comes "
            "from. Exits 2 when the plugin is not installed or its settings are invalid."
        ),
    )
    pshow.add_argument("name", help="the plugin's name (its entry point)")
    pshow.add_argument("--json", action="store_true", help="one JSON object")
    pshow.set_defaults(func=_cmd_plugins_show)
    pnew = plugins_sub.add_parser(
        "new",
        help="create a plugin package to start from (tests included, passing)",
        description=(
            "Writes an installable package for plugin NAME — settings model, the chosen "
            "hooks, unit tests, a test through the engine, py.typed, a test extra — into "
            "./om-NAME (or --dir). Install it with pip install -e '.[test]' and run "
            "python -m pytest in it."
        ),
    )
    pnew.add_argument("name", help="the plugin's name, e.g. quant_risk (lower case, _)")
    pnew.add_argument(
        "--hooks",
        default="check_signal",
        help="comma-separated: check_signal, select_order_type, calculate_quantity, "
        "check_order, order_event (default: check_signal)",
    )
    pnew.add_argument("--dir", help="where to write it (default: ./om-NAME)")
    pnew.set_defaults(func=_cmd_plugins_new)

    replay = sub.add_parser(
        "replay",
        help="feed recorded signals (JSON Lines) through the enabled plugins",
        description=(
            "Each line of FILE is one signal. By default the signals run through a fresh "
            "in-memory engine on the paper exchange (prices from [plugin.paper]); with "
            "--preview they are judged against the configured exchange and database, and "
            "nothing is sent. created_at is ignored unless --keep-created-at."
        ),
    )
    replay.add_argument("file", help="JSON Lines file, one signal per line ('-' for stdin)")
    replay.add_argument("--plugins", help="plugins to enable instead of OM_PLUGINS (a,b,…)")
    replay.add_argument("--json", action="store_true", help="one JSON object per signal")
    replay.add_argument(
        "--preview",
        action="store_true",
        help="use the configured exchange's rules and prices; never send anything",
    )
    replay.add_argument(
        "--keep-created-at",
        action="store_true",
        help="keep recorded created_at timestamps (age limits then apply)",
    )
    replay.set_defaults(func=_cmd_replay)

    order = sub.add_parser("order", help="order commands")
    order_sub = order.add_subparsers()
    preview = order_sub.add_parser(
        "preview",
        help="the exact order request a signal would produce, not sent",
    )
    preview.add_argument(
        "--signal", required=True, help="the signal as JSON, or @FILE to read it from a file"
    )
    preview.add_argument("--plugins", help="plugins to enable instead of OM_PLUGINS (a,b,…)")
    preview.set_defaults(func=_cmd_order_preview)

    sig = sub.add_parser("signal", help="signal commands")
    sig_sub = sig.add_subparsers()
    send = sig_sub.add_parser(
        "send",
        help="publish one signal to the configured broker (OM_BROKER_URL)",
        description=(
            "Publishes to model-service.trading_signals with publisher confirms and prints "
            "the signal id. Fields given as options override those in --json."
        ),
    )
    send.add_argument("--symbol")
    send.add_argument("--side", choices=["buy", "sell"])
    send.add_argument("--qty", help="base-asset quantity")
    send.add_argument("--notional", help="quote amount, e.g. USDT")
    send.add_argument("--price", help="limit (or reference) price")
    send.add_argument("--signal-id", help="default: a new UUID")
    send.add_argument(
        "--json", dest="json_payload", help="a signal JSON object to start from (or @FILE)"
    )
    send.set_defaults(func=_cmd_signal_send)

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers()
    up = db_sub.add_parser("upgrade", help="migrate to the newest schema")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_cmd_db_upgrade)
    down = db_sub.add_parser("downgrade", help="migrate down (default: one step)")
    down.add_argument("revision", nargs="?", default="-1")
    down.set_defaults(func=_cmd_db_downgrade)
    cur = db_sub.add_parser("current", help="print the database's schema revision")
    cur.set_defaults(func=_cmd_db_current)
    return parser


_SECRET_NAME = re.compile(r"SECRET|API_KEY|PASSWORD|TOKEN|PASSPHRASE")


def _secrets(settings: Settings) -> list[str]:
    secrets = [k.secret.get_secret_value() for k in settings.api_keys]
    # Plugins' credentials (exchange keys), wherever they were given: never in a log line.
    secrets += [v for k, v in os.environ.items() if k.startswith("OM_") and _SECRET_NAME.search(k)]
    for table in settings.plugin_config.values():
        secrets += [str(v) for k, v in table.items() if _SECRET_NAME.search(k.upper())]
    # Plugin secrets given as files are read by the plugins later; scrub them from the start.
    secrets += secrets_in_files(os.environ)
    for url in (settings.database_url, settings.broker_url):
        secrets += url_secrets(url)  # the password and ?password=-like query values
    return secrets


# -- run ---------------------------------------------------------------------------------------


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    # Everything that can be checked is checked before a consumer starts (Service.start,
    # om_core.startup): every problem printed, one line each, exit code 2.
    return asyncio.run(_run(settings, with_gateway=args.with_ws_gateway))


async def _run(settings: Settings, *, with_gateway: bool = False) -> int:
    from om_core.service import Service, StartupError
    from om_plugins.errors import PluginError

    service = Service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start(serving_api=settings.api_enabled)
    except (StartupError, PluginError, ConfigError) as exc:
        _print_problems(settings, exc)
        await service.stop()
        return _exit_code(exc)
    gateway = None
    if with_gateway:
        from om_core.stream_gateway import create_gateway

        try:
            gateway = create_gateway(service.hooks, settings.exchange, service.bus)
        except PluginError as exc:
            _print_problems(settings, exc)
            await service.stop()
            return _exit_code(exc)
        await gateway.start()
    server_task = None
    server = None
    if settings.api_enabled:
        from api.main import create_app

        app = create_app(service)
        server = _api_server(app, settings)
        server_task = asyncio.create_task(server.serve(), name="api")
    print(_banner(settings), flush=True)
    await stop.wait()
    log.info("stopping: finishing in-flight messages (grace %ss)", settings.shutdown_grace_seconds)
    if server is not None and server_task is not None:
        # Live streams first: the server waits for open connections before it exits.
        from api.console import stop_console

        await stop_console(app)
        server.should_exit = True
        await server_task
    if gateway is not None:
        await gateway.stop()
    await service.stop()
    log.info("stopped")
    return 0


def _cmd_ws_gateway(settings: Settings, _args: argparse.Namespace) -> int:
    return asyncio.run(_ws_gateway(settings))


async def _ws_gateway(settings: Settings) -> int:
    from om_core.messaging import create_bus
    from om_core.stream_gateway import run_gateway
    from om_plugins.errors import PluginError

    if settings.broker_url.startswith("memory://"):
        print(
            "error: OM_BROKER_URL=memory:// is inside one process; a separate gateway reaches "
            "nobody. Point it at RabbitMQ, or use `om run --with-ws-gateway`.",
            file=sys.stderr,
        )
        return 2
    bus = create_bus(
        settings.broker_url, queue_type=settings.queue_type, delivery_limit=settings.delivery_limit
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bus.start()
    try:
        await run_gateway(settings, bus, stop=stop)
    except PluginError as exc:
        _print_problems(settings, exc)
        return _exit_code(exc)
    finally:
        await bus.close()
    return 0


def _api_server(app: FastAPI, settings: Settings) -> uvicorn.Server:
    import uvicorn

    class _Server(uvicorn.Server):
        # The service owns SIGINT/SIGTERM; uvicorn must not install (and re-raise) its own.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="off",
        # A console left open must not hold the shutdown up for long.
        timeout_graceful_shutdown=5,
    )
    return _Server(config)


def _console_url(settings: Settings) -> str:
    if not settings.api_enabled:
        return "disabled (OM_API_ENABLED=false)"
    host = settings.api_host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the bind-all address, not binding it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    sign_in = "sign in with an API key" if settings.api_keys else "no sign-in: loopback only"
    return f"http://{host}:{settings.api_port}/ ({sign_in})"


def _banner(settings: Settings) -> str:
    info = settings.describe()
    lines = [
        "Order Manager is running",
        f"  database : {info['database_url']}",
        f"  broker   : {info['broker_url']}",
        f"  exchange : {info['exchange']}",
        f"  plugins  : {', '.join(info['plugins'])}",
        f"  API      : {info['api']}",
        f"  console  : {_console_url(settings)}",
        "Stop with Ctrl-C (SIGINT) or SIGTERM.",
    ]
    return "\n".join(lines)


def _cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - bound to every address: ask loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{settings.api_port}/{'ready' if args.ready else 'health'}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            print(f"{url}: {response.status}")
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"{url}: unreachable ({reason})", file=sys.stderr)
    return 1


# -- plugins -----------------------------------------------------------------------------------


def _cmd_plugins_list(settings: Settings, args: argparse.Namespace) -> int:
    from om_core.plugins import PluginLoadError, discover, hooks_of, load_plugins

    enabled = list(settings.plugins)
    loaded = None
    error = None
    try:
        loaded = load_plugins(enabled, settings.plugin_config)
    except PluginLoadError as exc:
        error = exc
    print(f"{'name':<16} {'enabled':<8} {'distribution':<28} hooks")
    for plugin in discover():
        is_on = plugin.name in enabled
        hooks = ", ".join(hooks_of(loaded.pm, plugin.name)) if loaded and is_on else "-"
        dist = f"{plugin.distribution} {plugin.version}"
        print(f"{plugin.name:<16} {'yes' if is_on else 'no':<8} {dist:<28} {hooks}")
    if args.hooks and loaded is not None:
        print("\ncall order per hook (first called first):")
        for caller in sorted(loaded.pm.hook.__dict__.values(), key=lambda c: c.name):
            impls = [i.plugin_name for i in reversed(caller.get_hookimpls())]
            if impls:
                print(f"  {caller.name}: {' → '.join(impls)}")
    if error is not None:
        _print_problems(settings, error)
        return 2
    return 0


def _cmd_plugins_show(settings: Settings, args: argparse.Namespace) -> int:
    from om_core.plugins import PluginLoadError, discover
    from om_core.plugins.introspect import setting_docs
    from om_core.plugins.loader import implemented_hooks, import_plugin
    from om_core.plugins.settings import build_plugin_settings, env_prefix_for

    name = args.name
    try:
        target = import_plugin(name)
    except PluginLoadError as exc:
        _print_problems(settings, exc)
        return 2
    found = next((p for p in discover() if p.name == name), None)
    model = getattr(target, "settings_model", None)
    table = settings.plugin_config.get(name, {})
    problems: list[str] = []
    validated = None
    if model is not None:
        try:
            validated = build_plugin_settings(name, target, model, table, os.environ)
        except PluginLoadError as exc:
            problems = exc.problems
    docs = (
        setting_docs(name, target, model, settings=validated, table=table, env=os.environ)
        if model is not None
        else []
    )
    info = {
        "name": name,
        "enabled": name in settings.plugins,
        "distribution": found.distribution if found else "?",
        "version": found.version if found else "?",
        "target": found.target if found else "?",
        "hooks": implemented_hooks(target),
        "table": f"[plugin.{name}]",
        "env_prefix": env_prefix_for(name, target),
        "settings": [doc.as_dict() for doc in docs],
        "schema": model.model_json_schema() if model is not None else None,
        "problems": problems,
    }
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        print(_format_show(info, has_model=model is not None))
    if problems:
        _print_problems(settings, PluginLoadError(name, "invalid settings", problems))
        return 2
    return 0


def _format_show(info: dict[str, Any], *, has_model: bool) -> str:
    import textwrap

    state = "enabled" if info["enabled"] else "not enabled (add it to OM_PLUGINS)"
    lines = [
        f"plugin {info['name']}: {state}",
        f"  package   {info['distribution']} {info['version']} ({info['target']})",
        f"  hooks     {', '.join(info['hooks']) or 'none'}",
    ]
    if not has_model:
        lines.append("  settings  none")
        return "\n".join(lines)
    lines.append(
        f"  settings  {info['table']} in the config file, or {info['env_prefix']}<SETTING>"
    )
    for item in info["settings"]:
        lines += ["", f"{item['name']}: {item['type']}"]
        if item["description"]:
            lines += textwrap.wrap(
                item["description"], 92, initial_indent="    ", subsequent_indent="    "
            )
        lines.append(f"    default   {item['default']}")
        if item["value"] is not None:
            lines.append(f"    value     {item['value']}  (from {item['source']})")
        elif info["problems"]:
            lines.append("    value     (the settings are invalid, see below)")
        lines.append(f"    variable  {item['env']}")
    return "\n".join(lines)


def _cmd_plugins_new(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from om_core.scaffold import ScaffoldError, render, write

    try:
        scaffold = render(args.name, args.hooks.split(","))
        directory = Path(args.dir) if args.dir else Path.cwd() / scaffold.distribution
        write(scaffold, directory)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    hooks = ", ".join(f"om_{h}" for h in scaffold.hooks)
    print(f"created {directory} — plugin {scaffold.name!r} ({hooks})")
    print("next:")
    print(f"  cd {directory}")
    print('  pip install -e ".[test]"     # into the environment Order Manager runs in')
    print("  python -m pytest             # its tests pass as generated")
    print(f"  OM_PLUGINS=builtin,{scaffold.name} om plugins show {scaffold.name}")
    return 0


# -- developer tools -----------------------------------------------------------------------------


def _print_problems(settings: Settings, exc: BaseException) -> None:
    from om_core.logs import SecretFilter
    from om_core.plugins import PluginLoadError

    scrub = SecretFilter(_secrets(settings)).scrub
    if isinstance(exc, PluginLoadError | ConfigError):
        lines = exc.problems
    else:
        lines = str(exc).splitlines()
    for line in lines or [type(exc).__name__]:
        print(f"error: {scrub(line)}", file=sys.stderr)


def _exit_code(exc: BaseException) -> int:
    """2 for anything the configuration or a plugin can fix; 1 for the rest (a database
    that is not migrated or unreachable, …)."""
    from om_core.service import StartupConfigError
    from om_core.tools.preview import PreviewSetupError
    from om_plugins.errors import PluginError

    if isinstance(exc, ConfigError | PluginError | StartupConfigError | PreviewSetupError):
        return 2
    return 1


def _tool_errors() -> tuple[type[Exception], ...]:
    """Errors that stop a tool before it ran, with a message meant for the user."""
    from om_core.service import StartupError
    from om_core.tools.preview import PreviewSetupError
    from om_plugins.errors import PluginError

    return (PluginError, StartupError, PreviewSetupError, ConfigError)


def _plugin_names(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _read_argument(value: str) -> bytes:
    """A command-line JSON argument, or the contents of the file named by ``@FILE``."""
    if value.startswith("@"):
        with open(value[1:], "rb") as handle:
            return handle.read()
    return value.encode("utf-8")


def _cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from om_core.tools.replay import format_table, replay

    try:
        if args.file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.file, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    notes: list[str] = []

    async def run() -> int:
        rows = []
        async for row in replay(
            lines,
            settings,
            plugin_env=os.environ,
            plugins=_plugin_names(args.plugins),
            preview=args.preview,
            keep_created_at=args.keep_created_at,
            notes=notes,
        ):
            if args.json:
                print(json.dumps(row.as_dict(), ensure_ascii=False), flush=True)
            else:
                rows.append(row)
        if not args.json:
            print(format_table(rows))
        return 0

    try:
        return asyncio.run(run())
    except _tool_errors() as exc:
        _print_problems(settings, exc)
        return _exit_code(exc)
    finally:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)


def _cmd_order_preview(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from om_core.tools.preview import standalone_previewer

    try:
        body = _read_argument(args.signal)
    except OSError as exc:
        print(f"error: cannot read {args.signal[1:]}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    notes: list[str] = []

    async def run() -> dict[str, Any]:
        async with standalone_previewer(
            settings, plugin_env=os.environ, plugins=_plugin_names(args.plugins), notes=notes
        ) as previewer:
            evaluation = await previewer.evaluate_payload(body)
            return {**evaluation.as_dict(), "state": previewer.state}

    try:
        result = asyncio.run(run())
    except _tool_errors() as exc:
        _print_problems(settings, exc)
        return _exit_code(exc)
    finally:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _cmd_signal_send(settings: Settings, args: argparse.Namespace) -> int:
    from om_core.db.types import utcnow
    from om_core.signals.contract import InvalidSignal, decode_json
    from om_core.tools.send import SendError, build_signal, send_signal

    try:
        base = decode_json(_read_argument(args.json_payload)) if args.json_payload else {}
        if not isinstance(base, dict):
            raise InvalidSignal([f"--json must be a JSON object, got {type(base).__name__}"])
        payload = build_signal(
            base=base,
            now=utcnow(),
            signal_id=args.signal_id,
            symbol=args.symbol,
            side=args.side,
            qty=args.qty,
            notional=args.notional,
            price=args.price,
        )
    except InvalidSignal as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {args.json_payload[1:]}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        signal_id = asyncio.run(send_signal(settings, payload))
    except InvalidSignal as exc:  # beyond this deployment's bounds (OM_MAX_MESSAGE_BYTES, …)
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except SendError as exc:
        _print_problems(settings, exc)
        return 2 if settings.broker_url.startswith("memory://") else 1
    except Exception as exc:
        _print_problems(settings, RuntimeError(f"cannot publish: {type(exc).__name__}: {exc}"))
        return 1
    print(signal_id)
    return 0


# -- db ----------------------------------------------------------------------------------------


def _cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from om_core.db import migrate

    asyncio.run(migrate.upgrade(settings.database_url, args.revision))
    print(f"database upgraded to {args.revision}")
    return 0


def _cmd_db_downgrade(settings: Settings, args: argparse.Namespace) -> int:
    from om_core.db import migrate

    asyncio.run(migrate.downgrade(settings.database_url, args.revision))
    print(f"database downgraded to {args.revision}")
    return 0


def _cmd_db_current(settings: Settings, _args: argparse.Namespace) -> int:
    from om_core.db import migrate

    current = asyncio.run(migrate.current_revision(settings.database_url))
    print(f"current: {current or 'none (empty database)'}; code expects: {migrate.head_revision()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
