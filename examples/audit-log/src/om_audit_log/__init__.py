"""Order Manager observer plugin ``audit_log``: every order event, one JSON line each."""

from __future__ import annotations

from om_audit_log.plugin import AuditLogPlugin, AuditLogSettings

__all__ = ["AuditLogPlugin", "AuditLogSettings"]
