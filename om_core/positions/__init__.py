"""Positions: built from fills (PositionManager), snapshotted on every change."""
