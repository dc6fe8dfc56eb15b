"""The demo's step display: plain lines with times when not on a terminal, a live list on one."""

from __future__ import annotations

import io
import itertools

import pytest
from rich.console import Console

from libra.demo.steps import Steps


def _plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()  # not a terminal, as a pipe, a log file or a CI job
    return Console(file=out, width=80), out


def test_plain_lines_name_each_step_and_its_time() -> None:
    console, out = _plain_console()
    ticks = iter([0.0, 1.3, 1.3, 31.0, 31.0, 31.5])
    with Steps(console, total=3, clock=lambda: next(ticks)) as steps:
        steps.start("synthetic web")
        steps.start("coordinator")
        steps.start("Sun 29 Nov: crawl, notices, reports")
    assert out.getvalue().splitlines() == [
        "[1/3] synthetic web ...",
        "[1/3] done in 1.3 s",
        "[2/3] coordinator ...",
        "[2/3] done in 29.7 s",
        "[3/3] Sun 29 Nov: crawl, notices, reports ...",
        "[3/3] done in 0.5 s",
    ]


def test_plain_lines_have_no_escape_codes_or_spinner_frames() -> None:
    console, out = _plain_console()
    ticks = itertools.count(0.0, 0.1)
    with Steps(console, total=2, clock=lambda: next(ticks)) as steps:
        steps.start("one")
        steps.start("two")
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert not set(text) & set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓✗")


def test_a_failing_step_says_so_and_the_error_goes_on() -> None:
    console, out = _plain_console()
    ticks = iter([0.0, 2.0, 2.0, 7.5])
    with (
        pytest.raises(RuntimeError, match="coordinator did not start"),
        Steps(console, total=4, clock=lambda: next(ticks)) as steps,
    ):
        steps.start("synthetic web")
        steps.start("coordinator")
        raise RuntimeError("coordinator did not start")
    assert out.getvalue().splitlines()[-1] == "[2/4] failed after 5.5 s"


def test_on_a_terminal_done_steps_are_ticked_and_a_failed_one_crossed() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    with pytest.raises(RuntimeError), Steps(console, total=2) as steps:
        steps.start("first")
        steps.start("second")
        raise RuntimeError("stop")
    final = out.getvalue().rsplit("\x1b[?25h", 1)[0]  # up to the cursor's return
    last_frame = final.replace("\r", "\n").splitlines()[-2:]
    assert "✓" in last_frame[0] and "[1/2] first" in last_frame[0]
    assert "✗" in last_frame[1] and "[2/2] second" in last_frame[1]
