"""The console's Jinja2 templates, and the filters they format numbers and times with."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

__all__ = ["STATIC_DIR", "TEMPLATES", "fragment", "page", "render"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"


def _number(value: Any) -> str:
    """A decimal in plain notation without trailing zeros; '' for nothing."""
    if value is None or value == "":
        return ""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if number == number.to_integral():
        return format(number.quantize(Decimal(1)), "f")
    return format(number.normalize(), "f")


def _signed_class(value: Any) -> str:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, TypeError):
        return ""
    return "pos" if number > 0 else "neg" if number < 0 else ""


def _when(value: Any) -> Markup:
    """A ``<time>``: HH:MM:SS UTC shown, the full ISO time in its ``datetime``."""
    if value is None or value == "":
        return Markup("")
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return Markup('<time datetime="{iso}" title="{iso}">{short}</time>').format(
        iso=moment.isoformat(), short=moment.strftime("%H:%M:%S")
    )


TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["num"] = _number
TEMPLATES.filters["signed"] = _signed_class
TEMPLATES.filters["when"] = _when


def render(name: str, **context: Any) -> str:
    return TEMPLATES.get_template(name).render(**context)


_MODULES: dict[str, Any] = {}


def macro(template: str, name: str, *args: Any, **kwargs: Any) -> str:
    """Render one macro of a template (a table row for the live stream)."""
    module = _MODULES.get(template)
    if module is None:
        # Built once: making the module runs the whole template.
        module = _MODULES[template] = TEMPLATES.get_template(template).make_module({})
    return str(getattr(module, name)(*args, **kwargs))


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(name, **context), status_code=status_code)


def fragment(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(name, **context), status_code=status_code)
