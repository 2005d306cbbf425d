"""Order Manager plugin ``template``; see ``plugin.py``."""

from __future__ import annotations

from om_template.plugin import TemplatePlugin, TemplateSettings

__all__ = ["TemplatePlugin", "TemplateSettings"]
