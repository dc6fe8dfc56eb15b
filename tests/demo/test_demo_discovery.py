"""The demo's new-material step (issue 14, libra/demo/discovery_demo.py): its checks and its
printed table from fixed rows (fast), and the step itself with real processes on loopback: the
function, the coordinator and the fourth node on the discovery world (marked e2e)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from libra.demo.defaults import DEFAULT_SEED
from libra.demo.discovery_demo import (
    MAX_SCALE,
    discovery_world,
    pick_verdicts,
    queue_rows,
    queue_table,
    verdict_check,
)
from libra.demo.discovery_world import KIND_DECORATION, KIND_NEW, DiscoveryWorld
from libra.demo.history import History
from libra.demo.labgeo import write_lab_geoip
from libra.demo.processes import DemoStepFailed
from libra.demo.runner import Federation
from libra.demo.summary import print_discovery

WIDTH = 80


@pytest.fixture(scope="module")
def dworld() -> DiscoveryWorld:
    return discovery_world(seed=7, scale=1.0)


def _row(world: DiscoveryWorld, kind: str, index: int, score: float) -> dict[str, object]:
    truth = sorted(world.images(kind), key=lambda t: t.url)[index]
    return {
        "id": 100 + index + (50 if kind == KIND_NEW else 0),
        "url": truth.url,
        "score": score,
        "cluster_id": None,
        "members": 1,
        "state": "pending",
    }


def test_the_world_is_capped_at_its_small_scale(dworld: DiscoveryWorld) -> None:
    assert dworld.scale == MAX_SCALE
    assert discovery_world(seed=7, scale=0.01).scale == 0.1


def test_verdicts_pick_the_best_true_and_the_best_false(dworld: DiscoveryWorld) -> None:
    rows = [
        _row(dworld, KIND_DECORATION, 0, 90.0),
        _row(dworld, KIND_NEW, 0, 80.0),
        _row(dworld, KIND_DECORATION, 1, 70.0),
        _row(dworld, KIND_NEW, 1, 60.0),
        _row(dworld, KIND_NEW, 2, 50.0),
    ]
    member = {**_row(dworld, KIND_NEW, 3, 40.0), "id": 999, "cluster_id": rows[1]["id"]}
    queue = queue_rows(dworld, [*rows, member])
    assert len(queue) == len(rows)  # members are not rows of the queue
    confirmed, rejected = pick_verdicts(queue)
    assert [r.id for r in confirmed] == [rows[1]["id"], rows[3]["id"]]
    assert rejected.id == rows[0]["id"] and rejected.truth.startswith("decoration (")
    with pytest.raises(DemoStepFailed, match="confirms 2 and rejects 1"):
        pick_verdicts([r for r in queue if r.new])


def test_the_table_fits_80_columns_and_shows_the_truth(dworld: DiscoveryWorld) -> None:
    rows = queue_rows(dworld, [_row(dworld, KIND_NEW, i, 90.0 - i) for i in range(8)])
    out = io.StringIO()
    Console(file=out, width=WIDTH).print(queue_table(rows, 20))
    text = out.getvalue()
    assert "\x1b" not in text
    assert all(len(line) <= WIDTH for line in text.splitlines())
    assert text.count("new (") == 8 and "top 8 of 20" in text


def test_the_verdict_check_catches_an_unmatched_url_and_a_pending_rejection(
    dworld: DiscoveryWorld,
) -> None:
    new = sorted(dworld.images(KIND_NEW), key=lambda t: t.url)[0]
    copies = {t.url for t in dworld.images(KIND_NEW) if t.item == new.item}
    bad = _row(dworld, KIND_DECORATION, 0, 70.0)
    (rejected,) = queue_rows(dworld, [bad])
    decided = [{**bad, "state": "rejected"}]
    ok = verdict_check(dworld, [new.url], rejected, decided, copies, (10, 10 + len(copies)))
    assert ok.confirmed_ok and ok.rejected_ok and not ok.differences()
    assert ok.lines()[0].startswith(f"confirmed: 1 items -> {len(copies)}/{len(copies)}")
    missing = verdict_check(dworld, [new.url], rejected, decided, set(), (10, 10))
    assert not missing.confirmed_ok and "0 of the confirmed" in missing.differences()[0]
    again = [*decided, {**bad, "id": 5000, "state": "pending"}]
    pending = verdict_check(dworld, [new.url], rejected, again, copies, (10, 11))
    assert not pending.rejected_ok and pending.rejected_pending == 1


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_the_step_on_real_processes(tmp_path: Path, history: History) -> None:
    console = Console(file=io.StringIO(), width=WIDTH)
    dworld = discovery_world(seed=DEFAULT_SEED, scale=MAX_SCALE)
    federation = Federation(history, tmp_path / "demo", console, dworld)
    try:
        lab_file = federation.start_world()
        geo = write_lab_geoip(history.world, federation.workdir / "geoip")
        federation.start_function(lab_file)
        federation.start_coordinator()
        federation.enroll_discovery_node(lab_file, geo)
        result = federation.new_material()
    finally:
        federation.stop()
    assert result is not None and result.agrees
    assert result.queue.recall >= 0.75 and not result.queue.problems()
    assert len(result.verdicts.confirmed_items) == 2
    first, second = result.verdicts.matches
    assert second == first + result.verdicts.confirmed_urls
    print_discovery(console, result)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= WIDTH for line in text.splitlines())
    assert "New material" in text and "candidates: " in text and "confirmed: 2 items" in text
    # The fourth node never registered: the coordinator knows three nodes only.
    stored = (federation.workdir / "coordinator" / "coordinator.sqlite3").read_bytes()
    assert b"node-discovery" not in stored
