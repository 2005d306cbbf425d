"""Persistence: tables, column types, engine/session factory and migrations."""
