"""Developer tools built on the engine: replay recorded signals, preview an order without
sending it, publish a signal by hand, and the in-process sandbox engine they and
:mod:`om_plugins.testing` run on. The ``om`` command wires them up; the logic lives here."""
