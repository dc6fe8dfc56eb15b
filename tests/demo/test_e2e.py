"""End to end: the demo federation as real processes on loopback over six simulated days,
against the ground truth (issue 16: per-period pictures, trends, time to removal, flows; issue
13: videos and stills among the images, every period's video cells).

No fixed deadline: each run's pytest-timeout is derived from its world (`demo_scale`, see
conftest.py), and the demo bounds every step itself (libra/demo/budget.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from libra.demo.compare import compare_picture
from libra.demo.history import HOTSPOT, HOTSPOT_PERIOD, PERIODS
from libra.demo.runner import DemoOptions, run_demo
from libra.demo.summary import print_result

pytestmark = pytest.mark.e2e


@pytest.mark.demo_scale(0.3)
def test_demo_history_equals_ground_truth(tmp_path: Path, demo_scale: float) -> None:
    console = Console(file=io.StringIO(), width=80)
    workdir = tmp_path / "demo"
    result = run_demo(DemoOptions(workdir=workdir, scale=demo_scale), console)

    assert result.agrees, "\n".join(result.differences)
    assert len(result.periods) == PERIODS >= 6
    first, last = result.periods[0].picture, result.periods[-1].picture
    assert first["nodes"] == 3 and first["reports"] == 3
    assert {row["hash_family"] for row in first["by_family"]} >= {"md5", "sha1", "sha256", "pdq"}
    # Issue 13: videos are in the demo: exact copies, vPDQ copies and stills, every day.
    assert result.history.world.videos
    assert {row["hash_family"] for row in first["by_family"]} >= {
        "video-sha256",
        "vpdq",
        "vpdq-frame",
    }
    assert len(result.videos) == len(result.periods)
    assert all(check.agrees for check in result.videos)
    assert result.videos[0].by_media["video"][0] > 0 and result.videos[0].stills[0] > 0
    assert any(row["country"] == "ZZ" for row in first["by_country"])
    # The hotspot is absent at first and present from midway.
    hot = HOTSPOT.name

    def at_hotspot(index: int) -> int:
        rows = result.periods[index].picture["by_hoster"]
        return sum(r["matches"] for r in rows if r["hoster"] == hot)

    assert at_hotspot(0) == 0 and at_hotspot(HOTSPOT_PERIOD) > 0
    assert last["totals"]["matches"] != first["totals"]["matches"]  # the picture moves
    # Hosters removed material after notices (times measured), one never did.
    removed = {c.hoster: c for c in result.removals}
    assert removed["Hoster A Ltd"].actual["removed"] > 0
    assert removed["Hoster A Ltd"].actual_median is not None
    assert removed["Hoster D Inc"].actual["removed"] == 0
    assert removed["Hoster D Inc"].actual["notices_sent"] >= 3
    # Displacement was measured, and across countries.
    by = {check.by: check for check in result.flows}
    assert any(got and got > 0 for got, _ in by["country"].flows.values())
    assert sum(result.notices_received.values()) > 0
    # The waterbed view between consecutive days was compared too.
    assert result.trends.agrees and result.trends.rows > 20

    # The comparison is not vacuous: a changed count is caught.
    period = result.periods[1]
    tampered = {**period.picture, "by_hoster": [dict(r) for r in period.picture["by_hoster"]]}
    tampered["by_hoster"][0]["matches"] += 1
    assert not compare_picture(tampered, period.expected).agrees
    print_result(console, result)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Time to removal" in text and "Flows by country" in text and "DIFFERS" not in text
    assert "Videos: the picture with media=video" in text
    # Issue 14: the new-material step passed (a fourth node that never reported), its queue
    # against the truth and the verdicts' effect are in the step's lines and the summary.
    discovery = result.discovery
    assert discovery is not None and discovery.agrees
    assert discovery.queue.recall >= 0.75 and not discovery.queue.problems()
    assert discovery.verdicts.confirmed_ok and discovery.verdicts.rejected_ok
    assert "new material: a discovery node" in text and "New material (issue 14" in text
    assert " ".join(discovery.check_line().split()) in " ".join(text.split())
    assert "confirmed: 2 items ->" in text and "rejected: 1 item ->" in text
    assert "libra node candidates confirm" in text and "--actor demo-analyst" in text
    assert "failed after" not in text

    # Nothing but aggregates reached the coordinator: no URL, host name or hash value.
    stored = (workdir / "coordinator" / "coordinator.sqlite3").read_bytes()
    assert b".test" not in stored and b"http://" not in stored
    values = {
        cell.encode()
        for path in (workdir / "nodes").rglob("lists/*.csv")
        for line in path.read_text().splitlines()[1:]
        for cell in line.split(";")[:2]
    }
    for path in (workdir / "nodes").rglob("lists/videos-vics.json"):
        for media in json.loads(path.read_text())["value"]:
            values |= {media["MD5"].encode(), media["SHA256"].encode()}
    assert values, "the demo wrote node lists"
    assert not any(value in stored for value in values)
