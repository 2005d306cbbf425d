"""Alembic migrations for the Order Manager schema.

Shipped as a package so :mod:`om_core.db.migrate` finds the scripts next to the installed code,
whatever the current directory. Apply them with ``om db upgrade`` or that module's functions.
"""
