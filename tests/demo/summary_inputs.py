"""A `DemoResult` made from the synthetic world's truth alone, without running the federation:
fixed inputs for rendering the demo's summary (tests of its width and its plain text).

The coordinator's answers are the truth itself, so every check agrees unless the caller
changes a figure. Nothing here starts a process or opens a socket.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from libra.demo.checks import CoverageCheck, FlowCheck, RemovalCheck, TrendCheck, flow_truth
from libra.demo.compare import compare_picture, expected_from_truth
from libra.demo.history import History, day_periods
from libra.demo.lists import node_list_families
from libra.demo.noticesim import NoticeSimulation
from libra.demo.policy import policy_text
from libra.demo.runner import DemoResult, PeriodResult

# A fixed "today": the periods are the days before it (2026-11-29 .. 2026-12-04).
TODAY = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
DAY_S = 24 * 3600 + 15 * 60  # one day plus the notices' daily drift


def _removals(sim: NoticeSimulation, history: History) -> list[RemovalCheck]:
    checks = []
    for hoster in history.world.hosters:
        stats = sim.by_hoster.get(hoster.key)
        if stats is None or stats.notices_sent == 0:
            continue
        seconds = sorted((f.seen_day - f.first_day) * DAY_S for f in stats.removals)
        counts = {
            "notices_sent": stats.notices_sent,
            "urls_noticed": stats.urls_noticed,
            "removed": len(seconds),
        }
        median = seconds[len(seconds) // 2] if seconds else None
        checks.append(
            RemovalCheck(
                hoster=hoster.name,
                policy=policy_text(hoster.key),
                expected=counts,
                actual=dict(counts),
                median=None if median is None else (median - 20, median + 20),
                p90=None if median is None else (0, 10 * DAY_S),
                actual_median=median,
                actual_p90=None if median is None else seconds[-1],
                nominal_median=median,
            )
        )
    return checks


def _flows(sim: NoticeSimulation, history: History, by: str) -> FlowCheck:
    check = FlowCheck(by, flow_truth(sim, history.world, by, history.periods))
    for step in check.steps:
        for (source, target), count in step.flows.items():
            check.flows[(step.day, source, target)] = (count, count)
    return check


def truth_result(history: History) -> DemoResult:
    """Every period's picture, removals, flows and coverage exactly as the truth says."""
    world = history.world
    sim = NoticeSimulation(history).run(until=history.periods - 1)
    families = node_list_families(world)
    periods = []
    for index, (start, end) in enumerate(day_periods(TODAY, history.periods)):
        expected = expected_from_truth(world.tally(sim.matches[index]), families)
        totals = {**expected["totals"], "pages_fetched": 900 + index, "images_hashed": 800}
        picture = {**expected, "totals": totals, "nodes": 3, "reports": 3}
        periods.append(
            PeriodResult(index, start, end, compare_picture(picture, expected), picture, expected)
        )
    coverage = CoverageCheck(rows=40)
    for n, hoster in enumerate(world.hosters):
        coverage.last[hoster.name] = (1200 + n, 30 + n, 250.0 + n, 180.5, 340.25)
    return DemoResult(
        periods=periods,
        removals=_removals(sim, history),
        flows=[_flows(sim, history, by) for by in ("hoster", "country")],
        trends=TrendCheck(rows=90),
        coverage=coverage,
        coordinator_url="http://127.0.0.1:8700",
        workdir=Path("/nonexistent/libra-demo"),
        seconds=123.4,
        tolerance_s=12,
        history=history,
        notices_received={"hoster-a": 3, "hoster-b": 9},
    )


def differing_result(history: History) -> DemoResult:
    """`truth_result` where the coordinator is wrong everywhere, by wide figures: every
    table at its widest (DIFFERS marks, "actual/truth" cells of five digits)."""
    result = truth_result(history)
    for period in result.periods:
        picture = {
            **period.picture,
            "by_country": [
                {**r, "matches": r["matches"] + 10_000} for r in period.picture["by_country"]
            ],
            "by_hoster": [
                {**r, "matches": r["matches"] + 10_000} for r in period.picture["by_hoster"]
            ],
        }
        period.picture = picture
        period.comparison = compare_picture(picture, period.expected)
    result.removals = [
        replace(
            check,
            actual={k: v + 10_000 for k, v in check.actual.items()},
            actual_median=99 * DAY_S,
        )
        for check in result.removals
    ]
    for check in result.flows:
        check.flows = {key: (truth + 10_000, truth) for key, (_, truth) in check.flows.items()}
        check.differences = ["flows differ"]
    result.coverage.differences = ["coverage differs"]
    result.trends.differences = ["[bold]shifts[/bold] differ"]  # brackets: not markup
    return result
