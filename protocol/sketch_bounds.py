"""How far a cell's ``distinct`` may lie from its HLL sketch's estimate (docs/protocol.md §3).

One rule for the coordinator and the conformance checker: six standard deviations either side,
so that an honest node is never refused (at three, about one honest large cell in 370 would be),
rounded outwards and widened by one for a coupon collision among small exact counts.
"""

from __future__ import annotations

import math

SIGMAS = 6


def distinct_bounds(estimate: float, lower_1: float, upper_1: float) -> tuple[int, int]:
    """The accepted ``distinct`` range from the sketch's estimate and 1-sigma bounds."""
    low = estimate - SIGMAS * (estimate - lower_1)
    high = estimate + SIGMAS * (upper_1 - estimate)
    return math.floor(low) - 1, math.ceil(high) + 1
