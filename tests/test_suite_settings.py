"""The suite's speed-independence settings are in force (tests/conftest.py, pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_hypothesis_measures_no_wall_clock() -> None:
    assert settings().deadline is None
    assert HealthCheck.too_slow in settings().suppress_health_check


@settings(max_examples=2)
@given(st.integers())
def test_a_slow_example_is_not_a_failure(n: int) -> None:
    # Busy for longer than Hypothesis's default 200 ms deadline: must still pass.
    import time

    end = time.monotonic() + 0.25
    while time.monotonic() < end:
        pass
    assert isinstance(n, int)


def test_global_timeout_is_a_backstop() -> None:
    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    timeout = config["tool"]["pytest"]["ini_options"]["timeout"]
    assert timeout >= 600  # see the comment there: far above any unit test under load
