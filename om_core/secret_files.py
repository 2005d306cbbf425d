"""``<SETTING>_FILE``: read a secret setting from a file instead of the environment.

Container orchestrators and systemd hand secrets over as files (``/run/secrets/…``,
``$CREDENTIALS_DIRECTORY/…``) so they never show in ``docker inspect``, ``ps e`` or a unit
file. For every secret setting ``X``, ``X_FILE`` names a file holding its value: the
``OM_*`` service settings marked secret (:data:`om_core.config.SECRET_SETTINGS`) and every
plugin setting typed ``SecretStr`` (``OM_BYBIT_API_SECRET_FILE``,
``OM_PLUGIN_<NAME>_<FIELD>_FILE``). Setting both ``X`` and ``X_FILE`` is an error: which one
wins would be a guess.

The one function :func:`resolve_secret_files` does it for both settings layers: it is given
the raw values before validation and replaces each ``<field>_file`` by ``<field>``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = [
    "FILE_SUFFIX",
    "SecretFileError",
    "read_secret_file",
    "resolve_secret_files",
    "secret_fields",
    "secrets_in_files",
]

FILE_SUFFIX = "_file"
#: Words that make an ``OM_*_FILE`` variable's content a secret to scrub from logs.
_SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")


class SecretFileError(ValueError):
    """A ``*_FILE`` setting could not be used; ``problems`` has one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read_secret_file(path: str | Path) -> str:
    """The file's text without its final line break (``echo`` and editors add one; no key
    or password ends with one)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def resolve_secret_files(
    values: Mapping[str, Any],
    fields: Iterable[str],
    *,
    name_of: Callable[[str], str],
) -> dict[str, Any]:
    """``values`` with each ``<field>_file`` (for ``field`` in ``fields``) replaced by
    ``<field>`` = the file's content. ``name_of`` turns a key into the name users set
    (``database_url`` → ``OM_DATABASE_URL``) for the error messages.

    Raises :class:`SecretFileError` listing every problem.
    """
    out = dict(values)
    problems: list[str] = []
    for field in fields:
        key = field + FILE_SUFFIX
        if key not in out:
            continue
        path = out.pop(key)
        if path is None or (isinstance(path, str) and not path.strip()):
            continue
        if out.get(field) not in (None, ""):
            problems.append(f"{name_of(field)} and {name_of(key)} are both set; set only one")
            continue
        try:
            out[field] = read_secret_file(str(path))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(f"{name_of(key)}: cannot read {path}: {reason}")
    if problems:
        raise SecretFileError(problems)
    return out


def secret_fields(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` typed ``SecretStr`` or ``SecretBytes`` (also optional ones)."""
    return [name for name, info in model.model_fields.items() if _holds_secret(info.annotation)]


def _holds_secret(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType or origin is typing.Annotated:
        return any(_holds_secret(arg) for arg in typing.get_args(annotation))
    return False


def secrets_in_files(environ: Mapping[str, str]) -> list[str]:
    """The contents of the ``OM_*_FILE`` files that hold secrets, to scrub them from logs
    before any plugin has read them. Unreadable files are skipped (validation reports them)."""
    found: list[str] = []
    for name, path in environ.items():
        upper = name.upper()
        if not (upper.startswith("OM_") and upper.endswith("_FILE")) or not path:
            continue
        if upper == "OM_CONFIG_FILE" or not any(w in upper for w in _SECRET_WORDS):
            continue
        try:
            found.append(read_secret_file(path))
        except (OSError, UnicodeDecodeError):
            continue
    return found
