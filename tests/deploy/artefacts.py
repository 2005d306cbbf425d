"""Read the deployment artefacts (Dockerfile, compose.yaml, systemd units) and ask the code
whether what they say exists: commands the CLI accepts, variables the settings read."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from om_core.cli import _parser
from om_core.config import SECRET_SETTINGS, Settings
from om_core.plugins.loader import discover
from om_core.plugins.settings import env_prefix_for
from om_core.secret_files import FILE_SUFFIX, secret_fields

ROOT = Path(__file__).resolve().parents[2]

#: Settings fields that are not configuration a deployment sets.
_INTERNAL_FIELDS = {"plugin_config"}


def entry_points() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = data["project"]["scripts"]
    return scripts


def command_problem(argv: list[str]) -> str | None:
    """``None`` when ``om <argv>`` is a command the real CLI runs; otherwise why not."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return f"`om {' '.join(argv)}` is not accepted by the CLI"
    if not isinstance(args, argparse.Namespace) or not hasattr(args, "func"):
        return f"`om {' '.join(argv)}` names no command"
    return None


def _plugin_settings() -> list[tuple[str, type[Any]]]:
    """(environment prefix, settings model) of every installed plugin that has settings."""
    out = []
    for plugin in discover():
        module, _, attr = plugin.target.partition(":")
        target = importlib.import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
        model = getattr(target, "settings_model", None)
        if model is not None:
            out.append((env_prefix_for(plugin.name, target), model))
    # Longest prefix first: OM_PLUGIN_X_ before OM_.
    return sorted(out, key=lambda p: len(p[0]), reverse=True)


def variable_problem(name: str) -> str | None:
    """``None`` when the ``OM_*`` variable ``name`` is one the code reads."""
    if not name.startswith("OM_"):
        return None
    for prefix, model in _plugin_settings():
        if name.startswith(prefix):
            key = name[len(prefix) :].lower()
            if key in model.model_fields:
                return None
            if key.endswith(FILE_SUFFIX) and key[: -len(FILE_SUFFIX)] in secret_fields(model):
                return None
            return f"{name}: {model.__name__} has no field {key!r} (nor a secret of that name)"
    key = name[3:].lower()
    if key in Settings.model_fields and key not in _INTERNAL_FIELDS:
        return None
    if key.endswith(FILE_SUFFIX) and key[: -len(FILE_SUFFIX)] in SECRET_SETTINGS:
        return None
    return f"{name}: no such setting"


# -- Dockerfile --------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON-array form's items (``[]`` when it is the shell form)."""
        import json

        text = self.args
        for flag in re.findall(r"^(?:--\S+\s+)+", text):
            text = text[len(flag) :]
        if text.startswith("CMD "):
            text = text[4:]
        text = text.strip()
        if not text.startswith("["):
            return []
        items = json.loads(text)
        assert isinstance(items, list)
        return [str(i) for i in items]


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile(path: Path = ROOT / "Dockerfile") -> tuple[dict[str, str], list[Stage]]:
    """(global ARGs, stages) of a Dockerfile: continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(parts[0], name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append(Instruction(keyword, rest.strip()))
    return args, stages


def env_pairs(instruction: Instruction) -> dict[str, str]:
    """``ENV A=1 B=2`` → ``{"A": "1", "B": "2"}``."""
    return dict(item.split("=", 1) for item in shlex.split(instruction.args))


# -- systemd ----------------------------------------------------------------------------


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """section → key → every value (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current[key.strip()].append(value.strip())
    return sections


def environment_lines(values: list[str]) -> dict[str, str]:
    """``Environment=`` values (each may hold several quoted ``KEY=VALUE``) as a dict."""
    out: dict[str, str] = {}
    for value in values:
        for item in shlex.split(value):
            key, _, val = item.partition("=")
            out[key] = val
    return out


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out
