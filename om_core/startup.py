"""What is checked before the service touches anything: every problem at once, one line each.

:meth:`om_core.service.Service.start` calls :func:`check_settings` first, then loads the
plugins (their settings are validated as they load) and builds the exchange adapter (which
refuses missing credentials) — all before a database connection, a broker connection or a
consumer exists. Everything found is raised together as one
:class:`~om_core.service.StartupConfigError`, which ``om run`` prints one line per problem
before exiting with code 2. Nothing here does I/O.

Every line names the setting at fault and never holds a secret: URLs are shown masked
(:func:`om_core.config.mask_url`), API keys not at all.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import ValidationError

from om_core.config import ApiKey, Settings, mask_url

__all__ = ["check_settings", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(settings: Settings, *, serving_api: bool = False) -> list[str]:
    """Problems of the settings themselves: URLs, API keys and, when this process serves the
    API (``om run``), an API open beyond loopback without keys."""
    problems = _database_url(settings.database_url)
    problems += _broker_url(settings.broker_url)
    problems += _api_keys(settings, serving_api=serving_api)
    return problems


def _database_url(url: str) -> list[str]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    got = f"(got {mask_url(url)})"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        return [f"OM_DATABASE_URL: not a database URL: {type(exc).__name__} {got}"]
    if parsed.drivername.startswith("postgresql"):
        if not parsed.host and "host" not in parsed.query:
            return [
                "OM_DATABASE_URL: names no host, as in postgresql+asyncpg://user@host:5432/db "
                + got
            ]
        if not parsed.database:
            return [f"OM_DATABASE_URL: names no database, as in …@host:5432/<database> {got}"]
    return []


def _broker_url(url: str) -> list[str]:
    if url.startswith("memory://"):
        return []
    got = f"(got {mask_url(url)})"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return [f"OM_BROKER_URL: not a URL: {exc} {got}"]
    if not parts.hostname:
        return [f"OM_BROKER_URL: names no host, as in amqp://user@host:5672/vhost {got}"]
    return []


def _api_keys(settings: Settings, *, serving_api: bool) -> list[str]:
    problems = []
    # Settings made in code (not through load_settings) skip nothing either.
    for number, key in enumerate(settings.api_keys, start=1):
        try:
            ApiKey.model_validate({"secret": key.secret, "scope": key.scope})
        except ValidationError as exc:
            reasons = "; ".join(str(err["msg"]) for err in exc.errors())
            problems.append(f"OM_API_KEYS entry {number}: {reasons}")
    exposed = serving_api and settings.api_enabled and not is_loopback(settings.api_host)
    if exposed and not settings.api_keys:
        problems.append(
            f"OM_API_HOST={settings.api_host} exposes the API beyond this machine but "
            "OM_API_KEYS is empty; configure keys or bind to 127.0.0.1"
        )
    return problems
