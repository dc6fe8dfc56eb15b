"""A child process that fails is summarised as one line (its whole output stays in its log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libra.demo.processes import DemoStepFailed, ProcessGroup, error_line

RICH_TRACEBACK = """\
╭───────────────────── Traceback (most recent call last) ──────────────────────╮
│ /work/main/node/matching/index/persist.py:66 in encode                       │
│                                                                              │
│ ❱  66 │   │   values = sorted(table)                                         │
╰──────────────────────────────────────────────────────────────────────────────╯
TypeError: 'ExactTable' object is not iterable
"""

PLAIN_TRACEBACK = """\
INFO:     Started server process [4242]
Traceback (most recent call last):
  File "x.py", line 1, in <module>
h11._util.LocalProtocolError: Too much data for declared Content-Length
"""

CLI_ERROR_PANEL = """\
Usage: libra node crawl [OPTIONS]
Try 'libra node crawl --help' for help.
╭─ Error ──────────────────────────────────────────────────────────────────────╮
│ No such option: --fast                                                       │
╰──────────────────────────────────────────────────────────────────────────────╯
"""


@pytest.mark.parametrize(
    ("output", "line"),
    [
        (RICH_TRACEBACK, "TypeError: 'ExactTable' object is not iterable"),
        (
            PLAIN_TRACEBACK,
            "h11._util.LocalProtocolError: Too much data for declared Content-Length",
        ),
        (CLI_ERROR_PANEL, "Error: No such option: --fast"),
        ("crawling\nError: the lab file has no port\n", "Error: the lab file has no port"),
        ("first\nlast words\n\n", "last words"),
        ("", "no output"),
    ],
)
def test_the_reason_is_one_line(output: str, line: str) -> None:
    assert error_line(output) == line


def test_a_failed_command_is_one_line_naming_its_log(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs", command_timeout=300.0)
    with pytest.raises(DemoStepFailed) as failed:
        group.run("hash-nope", ["hash", "--no-such-option"])
    message = str(failed.value)
    log = tmp_path / "logs" / "hash-nope.log"
    assert message == (
        f"`libra hash --no-such-option` failed (exit 2): Error: No such option: "
        f"--no-such-option; see {log}"
    )
    assert "No such option" in log.read_text(encoding="utf-8")  # the whole output is kept
