"""The demo's summary on an 80-column console that is not a terminal (a pipe, a log file):
plain text, every line within 80 columns, every name whole. Rendered from fixed inputs (the
world's truth, tests/demo/summary_inputs.py), without running the federation."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from rich.console import Console

from libra.demo.discovery_demo import DiscoveryResult, VerdictCheck
from libra.demo.discovery_world import QueueCheck
from libra.demo.history import History
from libra.demo.runner import DemoResult
from libra.demo.summary import print_result
from tests.demo.summary_inputs import differing_result, truth_result

WIDTH = 80


def _render(result: DemoResult) -> str:
    out = io.StringIO()
    print_result(Console(file=out, width=WIDTH), result)
    return out.getvalue()


@pytest.fixture(params=["agrees", "differs"])
def summary(request: pytest.FixtureRequest, history: History) -> tuple[DemoResult, str]:
    """The summary of a run that agrees, and of one whose every figure differs (its widest
    cells: five-digit counts, "coordinator/truth" pairs and DIFFERS marks)."""
    result = truth_result(history) if request.param == "agrees" else differing_result(history)
    return result, _render(result)


def test_no_escape_codes(summary: tuple[DemoResult, str]) -> None:
    _, text = summary
    assert "\x1b" not in text and "\r" not in text


def test_every_line_fits_80_columns(summary: tuple[DemoResult, str]) -> None:
    _, text = summary
    too_long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_long, too_long


def test_no_cell_is_cut_or_wrapped(summary: tuple[DemoResult, str]) -> None:
    result, text = summary
    assert "…" not in text
    lines = text.splitlines()
    names = {check.hoster for check in result.removals} | set(result.coverage.last)
    assert len(names) >= 7
    for name in names:  # each whole on one line (a cut or a wrap would split it)
        assert any(name in line for line in lines), name
    for period in result.periods:  # every period has its column in the trend tables
        assert f"{period.start:%d %b}" in text


def test_a_run_that_agrees_says_so(history: History) -> None:
    text = _render(truth_result(history))
    assert "DIFFERS" not in text
    assert "equal the ground truth" in " ".join(text.split())


def test_differences_are_listed_as_text_not_markup(history: History) -> None:
    result = differing_result(history)
    text = _render(result)
    assert "DIFFERS" in text and "differs from the ground truth" in text
    # The trend cells show the coordinator's figure and the truth's.
    first = result.periods[0].comparison.rows("by_country")[0]
    assert f"{first.actual['matches']}/{first.expected['matches']}" in text
    # A difference's square brackets are printed, not taken for style tags.
    assert "[bold]shifts[/bold] differ" in text
    # Each difference is one bullet; its continuation lines are indented under its text.
    bullets = [line for line in text.splitlines() if line.startswith(" - ")]
    assert len(bullets) == len(result.differences)


def test_the_new_material_block_fits_and_says_what_was_measured(history: History) -> None:
    queue = QueueCheck(
        threshold=40.0,
        clusters=27,
        true_clusters=14,
        new_found=14,
        new_total=14,
        split_items=0,
        merged_clusters=0,
        false_by_place={},
        found_by_setting={},
    )
    verdicts = VerdictCheck(
        confirmed_items=("new-001", "new-002"),
        confirmed_urls=3,
        confirmed_matched=3,
        rejected_item="decoration-004",
        rejected_rows=1,
        rejected_still=1,
        rejected_pending=0,
        rejected_matched=0,
        matches=(12345, 12348),
    )
    result = truth_result(history)
    result.discovery = DiscoveryResult(queue, (), (), verdicts)
    text = _render(result)
    assert all(len(line) <= WIDTH for line in text.splitlines())
    flat = " ".join(text.split())
    assert "New material" in flat and "14/14 new items found (recall 1.00)" in flat
    assert "3/3 of their URLs matched" in flat and "0 pending again" in flat
    assert "DIFFER" not in text
    # A confirmed URL not matched is a difference of the whole run.
    result.discovery = DiscoveryResult(queue, (), (), replace(verdicts, confirmed_matched=2))
    assert not result.agrees
    assert "2 of the confirmed items' 3 URLs matched" in " ".join(_render(result).split())
