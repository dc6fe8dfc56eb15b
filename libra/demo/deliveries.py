"""Whether each node's notices run reached the hosters' abuse desks as the truth says.

The truth (libra.demo.noticesim) has every round delivered in the run that opens it, and the
desks remove material only on notices they receive. A notice that does not arrive shows up
only as a picture that differs from the next day on, far from its cause (CI, 2026-12-06: the
desks refused every notice of a run, and the differences named counts, not notices). So the
runner checks every run at once, and says which desk missed which node's notices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Shortfall:
    """A hoster's desk received fewer of a node's notices than the truth has it send."""

    hoster: str
    received: int
    expected: int

    def __str__(self) -> str:
        return f"{self.hoster}'s abuse desk received {self.received} of {self.expected}"


def missing_deliveries(
    delivered: Mapping[tuple[int, str, str], int],
    day: int,
    node_id: str,
    before: Mapping[str, int],
    after: Mapping[str, int],
) -> list[Shortfall]:
    """The hosters short of ``node_id``'s deliveries of ``day``. ``delivered``: the truth's
    deliveries per (day, node, hoster) (NoticeSimulation.delivered); ``before``/``after``:
    the desks' counts of received notices around that node's run (nodes run one at a time)."""
    expected: dict[str, int] = {}
    for (d, node, hoster), count in delivered.items():
        if d == day and node == node_id:
            expected[hoster] = expected.get(hoster, 0) + count
    out = []
    for hoster, want in sorted(expected.items()):
        got = after.get(hoster, 0) - before.get(hoster, 0)
        if got < want:
            out.append(Shortfall(hoster, got, want))
    return out
