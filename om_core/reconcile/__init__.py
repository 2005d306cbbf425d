"""Reconciliation: make the database agree with the exchange (the exchange is the truth)."""

from om_core.reconcile.reconciler import Drift, Reconciler, ReconcileReport

__all__ = ["Drift", "ReconcileReport", "Reconciler"]
