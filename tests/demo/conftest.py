"""Shared, session-scoped synthetic worlds (building the full one takes a few seconds)."""

from __future__ import annotations

import pytest

from libra.demo.world import DEFAULT_SEED, World


@pytest.fixture(scope="session")
def world() -> World:
    return World.build(seed=DEFAULT_SEED)


@pytest.fixture(scope="session")
def small_world() -> World:
    return World.build(seed=DEFAULT_SEED, scale=0.1)
