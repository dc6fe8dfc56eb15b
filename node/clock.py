"""The clock a node command records its timestamps by (issue 16, docs/operations-node.md).

Production commands use the real clock. A lab (``lab`` set in the node TOML file) may run a
command "at" another moment, so that a demo drives weeks of periods in minutes: every timestamp
the command records is then ``at`` plus the real time elapsed since the command started, so
order and durations inside the command stay real. The clock is passed down as a value (never
patched in globally), and only lab nodes accept one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def real_clock() -> datetime:
    """Now in UTC, whole seconds: protocol.models.utcnow, without importing the models here
    (the command line imports this module before any command runs)."""
    return datetime.now(UTC).replace(microsecond=0)


LAB_ONLY = (
    "--at is only accepted in lab mode (a `lab` network in the node TOML file): "
    "a production node records the real time"
)


class LabClockRefused(Exception):
    """``--at`` was given to a node that is not in lab mode."""


def lab_clock(at: datetime) -> Clock:
    """``at`` + real time elapsed since this call (UTC, whole seconds like utcnow)."""
    if at.tzinfo is None:
        raise ValueError("the lab clock needs a timezone-aware moment (UTC)")
    start = time.monotonic()
    base = at.astimezone(UTC)

    def now() -> datetime:
        elapsed = timedelta(seconds=time.monotonic() - start)
        return (base + elapsed).replace(microsecond=0)

    return now


def clock_for(at: datetime | None, *, lab: bool) -> Clock:
    """The real clock, or the lab clock at ``at``; refused outside lab mode."""
    if at is None:
        return real_clock
    if not lab:
        raise LabClockRefused(LAB_ONLY)
    return lab_clock(at)
