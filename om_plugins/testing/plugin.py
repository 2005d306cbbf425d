"""The pytest plugin of :mod:`om_plugins.testing` (entry point ``pytest11``: ``om_plugins``).

Imports of the engine happen inside the fixtures, so a test run that uses none of them
does not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from om_plugins.testing.harness import EngineHarness
    from om_plugins.testing.registry import PluginRegistrar

__all__ = ["harness", "harness_factory", "register_plugin"]

MARKER = "om_harness"

_ASYNCIO_SCOPE = "asyncio_default_fixture_loop_scope"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the `harness` fixture (plugins, settings, env, "
        "prices, balance, now), see om_plugins.testing.EngineHarness",
    )
    _quiet_pytest_asyncio(config)


def _quiet_pytest_asyncio(config: pytest.Config) -> None:
    """Keep a plugin author's test run free of pytest-asyncio's deprecation warning.

    pytest-asyncio (installed with Order Manager's test tools) warns on every run of a
    project that never set ``asyncio_default_fixture_loop_scope``; a plugin project does not
    need to know pytest-asyncio exists (the kit's fixtures are synchronous). Unless the
    project chose a scope, it gets pytest-asyncio's own future default, ``function``. This
    runs before pytest-asyncio reads the option.
    """
    if not config.pluginmanager.hasplugin("asyncio"):
        return
    try:
        if config.getini(_ASYNCIO_SCOPE):
            return
    except ValueError:
        return
    cache = getattr(config, "_inicache", None)
    if isinstance(cache, dict):
        cache[_ASYNCIO_SCOPE] = "function"


@pytest.fixture
def harness_factory() -> Iterator[Callable[..., EngineHarness]]:
    """``harness_factory(**options)`` starts an :class:`~om_plugins.testing.EngineHarness`;
    every harness it made is closed after the test."""
    from om_plugins.testing.harness import EngineHarness

    made: list[EngineHarness] = []

    def make(**options: Any) -> EngineHarness:
        started = EngineHarness(**options).start()
        made.append(started)
        return started

    try:
        yield make
    finally:
        for item in reversed(made):
            item.close()


@pytest.fixture
def harness(
    request: pytest.FixtureRequest, harness_factory: Callable[..., EngineHarness]
) -> EngineHarness:
    """A started engine harness; options from ``@pytest.mark.om_harness(...)``."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        options.update(marker.kwargs)
    return harness_factory(**options)


@pytest.fixture
def register_plugin(request: pytest.FixtureRequest) -> Iterator[PluginRegistrar]:
    """Register plugins for this test only: on the ``harness`` when the test uses it, else
    on a fresh plugin manager (call hooks through ``register_plugin.hooks``)."""
    from om_core.plugins import new_plugin_manager
    from om_plugins.testing.registry import PluginRegistrar

    if "harness" in request.fixturenames:
        engine: EngineHarness = request.getfixturevalue("harness")
        registrar = PluginRegistrar(engine.pm, engine.hooks)
    else:
        registrar = PluginRegistrar(new_plugin_manager())
    try:
        yield registrar
    finally:
        registrar.unregister_all()
