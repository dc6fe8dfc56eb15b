"""The demo's step budgets: derived from the world, enforced on every step, and a step over its
budget fails with a message naming it (no test here depends on the machine's speed: the
processes below never finish by themselves)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libra.demo.budget import COMMAND_S, CRAWL_UNIT_S, SERVICE_S, DemoBudget
from libra.demo.history import History
from libra.demo.processes import DemoStepFailed, ProcessGroup, free_port
from libra.demo.world import World

from .conftest import BACKSTOP_MARGIN_S, demo_timeout


def test_budget_follows_the_work(world: World, small_world: World) -> None:
    big, small = DemoBudget.for_world(world), DemoBudget.for_world(small_world)
    stats = world.stats()
    assert big.crawl_s == COMMAND_S + CRAWL_UNIT_S * 3 * (stats["pages"] + stats["images"])
    assert small.crawl_s < big.crawl_s
    nodes = len(world.nodes)
    assert big.commands == 1 + 3 * nodes + 2 * nodes  # one period
    assert big.total_s == (
        2 * SERVICE_S + big.commands * COMMAND_S + big.crawl_s + big.request_s + 3 * big.request_s
    )
    # Six periods: a crawl, a picture, and a notices run and a report per node in each.
    six = DemoBudget.for_world(world, periods=6)
    assert six.commands == 1 + 3 * nodes + 12 * nodes
    assert (
        six.total_s
        == (2 * SERVICE_S + six.commands * COMMAND_S + 6 * (six.crawl_s + six.request_s))
        + 3 * six.request_s
    )


def test_backstop_lies_beyond_the_demo_budget(history: History) -> None:
    # The e2e backstop lies beyond the demo's own budget, so the demo's error comes first.
    budget = DemoBudget.for_world(history.world, history.periods)
    assert demo_timeout(0.3) == budget.total_s + BACKSTOP_MARGIN_S


def _forever(tmp_path: Path) -> list[str]:
    """A `libra` command that never ends by itself: a coordinator serving on loopback."""
    config = tmp_path / "coordinator.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return ["coordinator", "serve", "--config", str(config), "--port", str(free_port())]


def test_a_command_over_its_budget_fails_and_is_killed(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs", command_timeout=0.5)
    with pytest.raises(
        DemoStepFailed, match="`libra coordinator serve --config` did not finish within its budget"
    ):
        group.run("forever", _forever(tmp_path))


def test_a_waited_process_over_its_budget_fails_and_is_killed(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    proc = group.spawn("crawl-x", _forever(tmp_path))
    try:
        with pytest.raises(DemoStepFailed, match="crawl-x did not finish within its budget"):
            group.wait("crawl-x", proc, timeout=0.5)
        assert proc.poll() is not None  # killed, not left running
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.demo_scale(0.3)
def test_demo_scale_marker_sets_the_timeout(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None and marker.args[0] == demo_timeout(0.3)
