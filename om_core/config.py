"""Service settings: ``OM_*`` environment variables, optionally a TOML file.

Precedence, highest first: environment, the TOML file (``--config`` / ``OM_CONFIG_FILE``),
defaults. The file holds the service settings as top-level keys, the enabled plugins as
``plugins = ["builtin", "my_risk"]`` and each plugin's settings in a ``[plugin.<name>]``
table; plugin settings also come from ``OM_PLUGIN_<NAME>_<FIELD>`` variables and are
validated by :mod:`om_core.plugins` when the plugins load.

Mistakes are refused, never ignored: an unknown key in the file or an unknown ``OM_*``
variable is an error (with "did you mean …" for a near miss), and every problem is reported
at once, one line each.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from om_core.secret_files import SecretFileError, resolve_secret_files
from om_core.suggest import did_you_mean

__all__ = [
    "BUILTIN_PLUGINS",
    "RESERVED_ENV",
    "SECRET_QUERY_PARAM",
    "SECRET_SETTINGS",
    "ApiKey",
    "ConfigError",
    "Settings",
    "env_name",
    "load_settings",
    "mask_url",
    "service_env_names",
    "url_secrets",
]

log = logging.getLogger(__name__)

#: The token ``builtin`` in ``OM_PLUGINS`` expands to these, in this order.
BUILTIN_PLUGINS = ("paper", "risk", "order_type", "sizing", "bybit")
#: Settings that carry credentials: each may instead be read from the file ``OM_<X>_FILE``
#: names (see :mod:`om_core.secret_files`).
SECRET_SETTINGS = ("database_url", "broker_url", "api_keys")

#: ``OM_*`` variables read by the process that are not service settings: the config file's
#: path, the fault-injection switch of the kill tests, and the test suite's own.
RESERVED_ENV = frozenset({"OM_CONFIG_FILE", "OM_FAULT_KILL_AT", "OM_REQUIRE_SERVICES"})
_RESERVED_PREFIXES = ("OM_TEST_",)
#: Plugin settings; checked when the plugins load, where their names and prefixes are known.
PLUGIN_ENV_PREFIX = "OM_PLUGIN_"
#: Fields of :class:`Settings` that are filled by the loader, not by the user.
_INTERNAL_FIELDS = frozenset({"config_file", "plugin_config"})
#: Plugin entry-point group (also in :mod:`om_core.plugins.loader`, which imports more).
_ENTRY_POINT_GROUP = "order_manager.plugins"


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ApiScope(StrEnum):
    READ = "read"
    TRADE = "trade"


#: The shortest plaintext API key accepted (a key is a credential, not a name).
MIN_API_KEY_LENGTH = 16
_SHA256_KEY = re.compile(r"sha256:[0-9a-fA-F]{64}")
#: Characters a key may hold: printable ASCII but ``,`` and ``:`` (the list's separators).
_KEY_CHARS = re.compile(r"[!-9;-~]+")


class ApiKey(BaseModel):
    """One API key: plaintext, or its SHA-256 (``sha256:<hex>``) so config never holds it.

    Errors never quote the key.
    """

    secret: SecretStr
    scope: ApiScope = ApiScope.READ

    @property
    def is_hashed(self) -> bool:
        return self.secret.get_secret_value().startswith("sha256:")

    @field_validator("secret")
    @classmethod
    def _strict(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret.startswith("sha256:"):
            if not _SHA256_KEY.fullmatch(secret):
                raise ValueError(
                    f"a sha256: key needs exactly 64 hex digits after 'sha256:' "
                    f"(it has {len(secret) - 7} characters there)"
                )
            return value
        if len(secret) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"a key needs at least {MIN_API_KEY_LENGTH} characters (it has {len(secret)}); "
                "e.g. `openssl rand -hex 24`"
            )
        if not _KEY_CHARS.fullmatch(secret):
            raise ValueError(
                "a key may hold printable ASCII characters only, without ',' and ':' "
                "(the separators of OM_API_KEYS) or spaces"
            )
        return value


def _parse_api_keys(value: Any) -> Any:
    """``OM_API_KEYS="key1:trade,sha256:<hex>:read"``; the scope defaults to read.

    Strict: a scope that is not ``read`` or ``trade`` (``k1:Trade``, ``k1:write``) is an
    error, never part of the secret.
    """
    if not isinstance(value, str):
        return value
    keys: list[dict[str, Any]] = []
    scopes = {s.value for s in ApiScope}
    for number, raw in enumerate((part.strip() for part in value.split(",")), start=1):
        if not raw:
            continue
        if raw.startswith("sha256:"):
            body, colon, scope = raw.removeprefix("sha256:").partition(":")
            secret = "sha256:" + body
        else:
            secret, colon, scope = raw.partition(":")
        if not colon:
            keys.append({"secret": secret})
            continue
        if scope not in scopes:
            # Not quoted: what follows a ':' may be part of a secret.
            hint = " (scopes are lowercase)" if scope.lower() in scopes else ""
            raise ValueError(
                f"entry {number}: the scope after ':' is not 'read' or 'trade'{hint}; "
                "a key may not contain ':'"
            )
        keys.append({"secret": secret, "scope": scope})
    return keys


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_", extra="ignore", validate_default=True)

    database_url: str = "sqlite+aiosqlite:///./order_manager.db"
    #: ``memory://`` is the in-process bus; ``amqp://…`` is RabbitMQ.
    broker_url: str = "memory://"
    exchange: str = "paper"
    #: Plugins to enable, in order; ``builtin`` expands to :data:`BUILTIN_PLUGINS`.
    plugins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["builtin"])
    #: ``None`` means: migrate automatically on SQLite (embedded), never on a server database.
    db_auto_migrate: bool | None = None

    api_keys: Annotated[list[ApiKey], NoDecode] = Field(default_factory=list)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_enabled: bool = True
    #: The largest request body the API reads (a larger one is refused 413 before reading).
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024 * 1024)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    trace_plugins: bool = False
    #: A decision hook (or an event observer) that takes longer than this is logged as a
    #: WARNING naming plugin, hook and duration; every call is in the
    #: ``om_plugin_hook_duration_seconds`` histogram.
    hook_budget_ms: float = Field(default=20.0, gt=0)
    #: When the trading day starts, as a UTC time of day: ``context.today`` counts realized
    #: PnL and fees from the last such moment.
    trading_day_start: time = time(0, 0)

    #: Signals older than this (by ``created_at``, else the AMQP ``timestamp``, else first
    #: receipt) are rejected as stale.
    max_signal_age_seconds: float = Field(default=60.0, gt=0)
    #: Largest signal, in bytes, on the bus and over the API (docs/signals.md, "Limits").
    max_message_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: How far ahead of this clock a signal's ``created_at`` may be before it is rejected
    #: ``SIGNAL_FROM_FUTURE``.
    clock_skew_seconds: float = Field(default=5.0, ge=0, le=3600)
    #: Dead-letter signals without ``created_at`` (their age cannot be known otherwise).
    require_created_at: bool = False
    #: Messages a consumer holds unacknowledged at once. Under load this bounds the batches:
    #: four batches of up to ``signal_batch`` in progress, and the next ones waiting, need
    #: about 8 × 32 (a burst ran at 120 signals/s with 64, 220/s with 256: bench/README.md).
    prefetch: int = Field(default=256, ge=1, le=2000)
    #: RabbitMQ queue type for the queues this service declares.
    queue_type: Literal["quorum", "classic"] = "quorum"
    #: Redeliveries before the broker dead-letters a message that keeps crashing consumers.
    delivery_limit: int = Field(default=10, ge=1)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    #: How long a message whose processing failed transiently (database or broker connection
    #: lost, serialization failure, deadlock, lock timeout, exchange unreachable) is retried
    #: while held; past it, the message is dead-lettered with the last error. Any other
    #: failure dead-letters it at once (om_core/failures.py).
    retry_seconds: float = Field(default=60.0, gt=0, le=3600)
    #: ``/ready`` answers not ready while a consumed message has been held unacknowledged
    #: longer than this (a stuck consumer): see ``om_consumer_oldest_unacked_age_seconds``.
    ready_max_unacked_seconds: float = Field(default=120.0, gt=0)
    #: Most signals decided in one transaction (they are batched only while the service is
    #: busy; 1 = one transaction per signal).
    signal_batch: int = Field(default=32, ge=1, le=1000)
    #: Most order updates applied in one transaction (likewise).
    update_batch: int = Field(default=64, ge=1, le=1000)
    #: How long a publish waits for the broker's confirm (or for a lost connection to come
    #: back) before it counts as failed and is retried.
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Outbox events awaiting their publisher confirm at once (1 = strictly one at a time).
    outbox_in_flight: int = Field(default=64, ge=1, le=1000)
    #: Seconds between periodic reconciliations with the exchange (0 = only at startup,
    #: after stream gaps and on demand).
    sync_interval: float = Field(default=60.0, ge=0)
    #: Seconds between periodic snapshots of open positions (0 = only on changes).
    position_snapshot_interval: float = Field(default=300.0, ge=0)
    #: 0: every instance consumes the entry queues (instances compete message by message; the
    #: per-symbol locks keep that safe). N ≥ 1, on RabbitMQ: each entry queue is routed by
    #: symbol into N partition queues, each consumed by one instance at a time
    #: (docs/deploy.md, "Scaling out"). Fixed for a deployment.
    partitions: int = Field(default=0, ge=0, le=256)
    #: Seconds between coordination checks: the coordination session's health, taking over
    #: the singletons and partitions of instances that died, rebalancing.
    cluster_check_interval: float = Field(default=1.0, gt=0, le=60)
    #: Seconds after which PostgreSQL ends the coordination session of an instance that went
    #: silent (frozen, cut off), so that others take its work over.
    cluster_session_timeout: float = Field(default=10.0, ge=2, le=600)

    #: ``OM_<X>_FILE`` for each of :data:`SECRET_SETTINGS`: a file holding the value (consumed
    #: by ``_secret_files`` below; they are always ``None`` afterwards).
    database_url_file: str | None = Field(default=None, exclude=True, repr=False)
    broker_url_file: str | None = Field(default=None, exclude=True, repr=False)
    api_keys_file: str | None = Field(default=None, exclude=True, repr=False)

    #: Seconds between samples of the console's charts (the last hour is kept in memory; 0 =
    #: no sampling).
    metrics_sample_seconds: float = Field(default=5.0, ge=0)

    config_file: Path | None = None
    #: Raw ``[plugin.<name>]`` tables from the config file, validated per plugin later.
    plugin_config: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("trading_day_start")
    @classmethod
    def _utc_time_of_day(cls, value: time) -> time:
        offset = value.utcoffset()
        if offset is not None and offset.total_seconds() != 0:
            raise ValueError("give the time of day in UTC, without an offset (e.g. 22:00)")
        return value.replace(tzinfo=None)

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        try:
            return resolve_secret_files(
                data, SECRET_SETTINGS, name_of=lambda field: f"OM_{field.upper()}"
            )
        except SecretFileError as exc:
            raise ConfigError(exc.problems) from None

    @field_validator("plugins", mode="before")
    @classmethod
    def _plugins_list(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("plugins")
    @classmethod
    def _expand_builtin(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for name in value:
            for item in BUILTIN_PLUGINS if name == "builtin" else (name,):
                if item not in out:
                    out.append(item)
        return out

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return _parse_api_keys(value)

    @field_validator("cluster_session_timeout")
    @classmethod
    def _session_outlives_checks(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("cluster_check_interval")
        if isinstance(interval, float) and value < 3 * interval:
            raise ValueError(
                f"must be at least 3 × OM_CLUSTER_CHECK_INTERVAL ({interval:g}s): an instance "
                "checks in every interval, and a few missed checks must not cost it its work"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if scheme not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                f"(got scheme {scheme!r})"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if scheme not in {"memory", "amqp", "amqps"}:
            raise ValueError(f"must be memory:// or amqp(s)://… (got scheme {scheme!r})")
        return value

    @property
    def is_embedded_db(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def auto_migrate(self) -> bool:
        return self.is_embedded_db if self.db_auto_migrate is None else self.db_auto_migrate

    def describe(self) -> dict[str, Any]:
        """The settings as shown to humans and plugins: every secret masked."""
        return {
            "database_url": mask_url(self.database_url),
            "broker_url": mask_url(self.broker_url),
            "exchange": self.exchange,
            "plugins": list(self.plugins),
            "api": f"http://{self.api_host}:{self.api_port}" if self.api_enabled else "disabled",
            "api_keys": [f"*** ({k.scope})" for k in self.api_keys],
            "log_level": self.log_level,
            "hook_budget_ms": self.hook_budget_ms,
            "trading_day_start": self.trading_day_start.isoformat(timespec="minutes"),
        }


class _ExplicitSettings(Settings):
    """Settings from the given values only: no environment, no dotenv, no secrets dir."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


#: Query parameters that carry credentials (``?password=``, ``sslpassword``, ``token``, …).
SECRET_QUERY_PARAM = re.compile(
    r"(?P<name>(?:^|[?&;])[^=&;#\s]*(?:pass|pwd|secret|token|key|credential|auth)[^=&;#\s]*=)"
    r"(?P<value>(?!\*\*\*)[^&;#\s]+)",
    re.IGNORECASE,
)


def mask_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host`` and of every credential-like
    query parameter (``?password=``, ``sslpassword=``, ``token=``); leave the rest readable."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL at all (a bad port, brackets): show nothing of it
        return "***"
    netloc = parts.netloc
    if password is not None:
        netloc = netloc.replace(f":{password}@", ":***@", 1)
    query = SECRET_QUERY_PARAM.sub(r"\g<name>***", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_secrets(url: str) -> list[str]:
    """The credentials in ``url`` (its password, credential-like query values), to scrub."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return [url]
    for match in SECRET_QUERY_PARAM.finditer(parts.query):
        found.append(match.group("value"))
        found.append(unquote(match.group("value")))
    return found


def _mask_value(field: str, value: Any) -> str:
    if isinstance(value, str):
        if "url" in field:
            return mask_url(value)
        if any(word in field for word in ("key", "secret", "password", "token")):
            return "***"
    return repr(value)


def env_name(field: str) -> str:
    """The environment variable of a service setting: ``api_port`` → ``OM_API_PORT``."""
    return f"OM_{field.upper()}"


def _public_fields() -> list[str]:
    return [name for name in Settings.model_fields if name not in _INTERNAL_FIELDS]


def service_env_names() -> frozenset[str]:
    """Every ``OM_*`` variable that is a service setting."""
    return frozenset(env_name(name) for name in _public_fields())


def format_validation_error(
    exc: ValidationError,
    prefix: str = "OM_",
    *,
    file_keys: Iterable[str] = (),
    path: str | Path | None = None,
) -> list[str]:
    """One line per problem, naming the variable (or the config file's key) it came from."""
    from_file = set(file_keys)
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        shown = _mask_value(field.lower(), err.get("input"))
        top = str(err["loc"][0]) if err["loc"] else ""
        if top in from_file and path is not None:
            where = f"config file {path}: {field}"
        else:
            where = prefix + top.upper() if top else prefix
        lines.append(f"{where}: {err['msg']} (got {shown})")
    return lines


def installed_plugin_names() -> list[str]:
    """Names of the installed plugins (entry points), without importing any of them."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=_ENTRY_POINT_GROUP)})


def unknown_env_problems(environ: Mapping[str, str], plugin_names: Iterable[str]) -> list[str]:
    """``OM_*`` variables that are no service setting.

    ``OM_PLUGIN_*`` variables, and ``OM_<PLUGIN>_*`` ones of an installed plugin (the Bybit
    plugin reads ``OM_BYBIT_*``), are left to the plugin loader, which knows the enabled
    plugins and their prefixes.
    """
    known = service_env_names()
    plugin_prefixes = tuple(f"OM_{name.upper().replace('-', '_')}_" for name in plugin_names)
    problems = []
    for key in sorted(environ):
        if (
            not key.startswith("OM_")
            or key in known
            or key in RESERVED_ENV
            or key.startswith((*_RESERVED_PREFIXES, PLUGIN_ENV_PREFIX))
            or key.startswith(plugin_prefixes)
        ):
            continue
        problems.append(
            f"{key}: not a setting of Order Manager{did_you_mean(key, known)} "
            "(service settings: see the README; plugin settings: OM_PLUGIN_<NAME>_<FIELD>)"
        )
    return problems


def _read_file(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"config file {path}: {exc.strerror or exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path}: not valid TOML: {exc}"]) from exc


def _split_file(
    path: str | Path, data: dict[str, Any], problems: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The file's service settings (``plugins`` included) and its plugin tables.

    ``[plugin.<name>]`` tables hold plugin settings. The older ``[plugins.<name>]`` tables
    are still read when ``plugins`` is nothing but tables — then it cannot be the enabled
    list — and no ``[plugin]`` table exists.
    """
    values = dict(data)
    tables: Any = values.pop("plugin", None)
    enabled = values.get("plugins")
    if isinstance(enabled, dict):
        del values["plugins"]
        if tables is not None:
            problems.append(
                f"config file {path}: both [plugins.<name>] and [plugin.<name>] tables; "
                "move the settings to [plugin.<name>] and list the enabled plugins as "
                'plugins = ["builtin", …]'
            )
        else:
            log.warning(
                "config file %s: [plugins.<name>] tables are deprecated; name them "
                '[plugin.<name>] and list the enabled plugins as plugins = ["builtin", …]',
                path,
            )
            tables = enabled
    if tables is None:
        return values, {}
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        problems.append(
            f"config file {path}: [plugin] must hold one table per plugin, [plugin.<name>]"
        )
        return values, {}
    return values, tables


def load_settings(
    config_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from the environment and an optional TOML file.

    Raises :class:`ConfigError` with one line per problem — every problem at once: unknown
    keys in the file, unknown ``OM_*`` variables and invalid values.
    """
    environ = os.environ if env is None else env
    path = config_file or environ.get("OM_CONFIG_FILE")
    problems: list[str] = []
    file_values: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    if path:
        data, tables = _split_file(path, _read_file(path), problems)
        fields = _public_fields()
        for key in data:
            if key not in fields:
                problems.append(
                    f"config file {path}: unknown key {key!r}"
                    f"{did_you_mean(key, [*fields, 'plugin'])}"
                )
        file_values = {k: v for k, v in data.items() if k in fields and env_name(k) not in environ}
    problems += unknown_env_problems(environ, installed_plugin_names())
    values = dict(file_values)
    values["plugin_config"] = tables
    if path:
        values["config_file"] = Path(path)
    try:
        if env is None:
            settings: Settings = Settings(**values)
        else:
            # An explicit env mapping (tests, tools) replaces os.environ entirely.
            explicit = {
                key[3:].lower(): value
                for key, value in environ.items()
                if key.startswith("OM_") and key in service_env_names()
            }
            settings = _ExplicitSettings(**{**values, **explicit})
    except ValidationError as exc:
        problems += format_validation_error(exc, file_keys=file_values, path=path)
    if problems:
        raise ConfigError(problems)
    return settings
