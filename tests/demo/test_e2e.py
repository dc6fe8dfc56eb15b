"""End to end: the demo federation as real processes on loopback, against the ground truth.

No fixed deadline: each run's pytest-timeout is derived from its world (`demo_scale`, see
conftest.py), and the demo bounds every step itself (libra/demo/budget.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from libra.demo.compare import compare_picture
from libra.demo.runner import DemoOptions, run_demo

pytestmark = pytest.mark.e2e


@pytest.mark.demo_scale(1.0)
def test_demo_picture_equals_ground_truth(tmp_path: Path, demo_scale: float) -> None:
    console = Console(file=io.StringIO(), width=120)
    result = run_demo(DemoOptions(workdir=tmp_path / "demo", scale=demo_scale), console)

    assert result.agrees, result.comparison.differences
    picture, expected = result.picture, result.expected
    # The world is not trivial: several countries, hosters and families, overlap between nodes.
    assert len(picture["by_country"]) >= 4
    assert len(picture["by_hoster"]) >= 6
    assert {row["hash_family"] for row in picture["by_family"]} >= {"md5", "sha1", "sha256", "pdq"}
    assert picture["totals"]["matches"] > picture["totals"]["distinct"] > 0
    assert picture["nodes"] == 3 and picture["reports"] == 3
    # An attribution the lab GeoIP does not know is counted as unknown, not dropped.
    assert any(row["country"] == "ZZ" for row in picture["by_country"])
    assert picture["totals"]["images_hashed"] > 400
    # The comparison is not vacuous: a changed count is caught.
    tampered = {**picture, "by_country": [dict(r) for r in picture["by_country"]]}
    tampered["by_country"][0]["matches"] += 1
    assert not compare_picture(tampered, expected).agrees


@pytest.mark.demo_scale(0.3)
def test_nothing_but_aggregates_reached_the_coordinator(tmp_path: Path, demo_scale: float) -> None:
    """The coordinator's database holds no URL, no host name and no hash value."""
    console = Console(file=io.StringIO(), width=120)
    workdir = tmp_path / "demo"
    result = run_demo(DemoOptions(workdir=workdir, scale=demo_scale), console)
    assert result.agrees, result.comparison.differences

    stored = (workdir / "coordinator" / "coordinator.sqlite3").read_bytes()
    assert b".test" not in stored and b"http://" not in stored
    lists = (workdir / "nodes").rglob("lists/*.txt")
    values = {
        line.strip().encode()
        for path in lists
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert values, "the demo wrote node lists"
    assert not any(value in stored for value in values)
