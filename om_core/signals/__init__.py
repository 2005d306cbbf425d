"""Signals: the input contract on ``model-service.trading_signals``."""
