"""The forward flow: signal → decision → exactly-once placement."""
