"""Shared, session-scoped synthetic worlds (building the full one takes a few seconds), and the
pytest-timeout of the end-to-end demo runs, derived from their worlds."""

from __future__ import annotations

from functools import cache

import pytest

from libra.demo.budget import DemoBudget
from libra.demo.history import History
from libra.demo.world import DEFAULT_SEED, World

# Beyond the demo's own budget: pytest-timeout is only the backstop for a hang outside the
# budgeted steps; the demo's own error (naming the step and its log) must come first.
BACKSTOP_MARGIN_S = 300.0


@cache
def _world(scale: float) -> World:
    return World.build(seed=DEFAULT_SEED, scale=scale)


@cache
def _history(scale: float) -> History:
    return History.build(seed=DEFAULT_SEED, scale=scale)


def demo_timeout(scale: float) -> float:
    """pytest-timeout for `run_demo` at ``scale``: its total budget (all periods) plus a
    margin."""
    history = _history(scale)
    return DemoBudget.for_world(history.world, history.periods).total_s + BACKSTOP_MARGIN_S


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: build worlds only for tests that run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("demo_scale")
        if marker is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(demo_timeout(float(marker.args[0]))))


@pytest.fixture
def demo_scale(request: pytest.FixtureRequest) -> float:
    """The scale of the test's `demo_scale` marker (one number for the run and its timeout)."""
    marker = request.node.get_closest_marker("demo_scale")
    assert marker is not None, "mark the test with @pytest.mark.demo_scale(SCALE)"
    return float(marker.args[0])


@pytest.fixture(scope="session")
def world() -> World:
    return _world(1.0)


@pytest.fixture(scope="session")
def small_world() -> World:
    return _world(0.1)


@pytest.fixture(scope="session")
def history() -> History:
    return _history(0.3)
