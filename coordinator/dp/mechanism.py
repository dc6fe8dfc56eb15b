"""Calibrated noise for integer counts: OpenDP's discrete Laplace (geometric) mechanism.

A release is one vector of integer counts whose L1 sensitivity (how much one unit of privacy
can change the whole vector, summed over its cells) the caller states. The noise scale is
``sensitivity / epsilon``, nudged up by the smallest float steps until OpenDP's own privacy
map confirms the release costs at most ``epsilon`` (the map rounds conservatively, so e.g.
scale 3/0.3 maps to 0.30000000000000004 and needs one step). Sampling uses OpenDP's
cryptographically secure RNG: there is no seed, so tests check the distribution statistically.

Why ``contrib``: OpenDP ships every measurement whose proof has not finished its formal
review behind the "contrib" feature flag, and ``make_laplace`` is one of them (its proof
document is published with the library); the library refuses to build it unless the flag is
enabled, so this module enables it, and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import opendp.prelude as dp

MECHANISM = "discrete_laplace"
# A scale found by nudging is at most this many float steps above sensitivity/epsilon.
_MAX_NUDGES = 64

dp.enable_features("contrib")


class MechanismError(ValueError):
    """An epsilon or sensitivity no release can be made with."""


@dataclass(frozen=True)
class NoisyCounts:
    values: list[int]  # noisy, rounded to be non-negative (post-processing)
    raw: list[int]  # noisy, unrounded: sums of these stay unbiased (rounding each adds bias)
    epsilon: float  # what OpenDP's privacy map says this release costs (<= asked)
    scale: float  # discrete Laplace scale b: P(k) proportional to exp(-|k| / b)
    sensitivity: int


def _measurement(scale: float) -> Any:
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    return dp.m.make_laplace(*space, scale=scale)


def scale_for(epsilon: float, sensitivity: int) -> float:
    """The smallest scale (from sensitivity/epsilon upwards) that OpenDP maps to <= epsilon."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise MechanismError(f"epsilon must be a positive finite number, not {epsilon!r}")
    if sensitivity < 1:
        raise MechanismError(f"sensitivity must be a positive integer, not {sensitivity!r}")
    scale = sensitivity / epsilon
    for _ in range(_MAX_NUDGES):
        if _measurement(scale).map(sensitivity) <= epsilon:
            return scale
        scale = math.nextafter(scale, math.inf)
    raise MechanismError(f"no scale near {sensitivity / epsilon} maps to epsilon {epsilon}")


def standard_deviation(scale: float) -> float:
    """Standard deviation of the discrete Laplace with scale b (alpha = exp(-1/b)):
    sqrt(2 alpha) / (1 - alpha); close to the continuous sqrt(2) b for b >= 1."""
    alpha = math.exp(-1.0 / scale)
    return math.sqrt(2.0 * alpha) / (1.0 - alpha)


def noisy_counts(counts: Sequence[int], *, epsilon: float, sensitivity: int) -> NoisyCounts:
    """Each count plus independent discrete Laplace noise, then max(0, .) (post-processing:
    rounding never costs privacy). ``counts`` must be non-negative integers."""
    for value in counts:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MechanismError(f"counts must be non-negative integers, not {value!r}")
        if value >= 2**62:  # the noisy value must still fit OpenDP's i64
            raise MechanismError(f"count {value} is too large for a noisy release")
    scale = scale_for(epsilon, sensitivity)
    measurement = _measurement(scale)
    spent = float(measurement.map(sensitivity))
    noisy = [int(v) for v in measurement(list(counts))] if counts else []
    return NoisyCounts(
        values=[max(0, v) for v in noisy],
        raw=noisy,
        epsilon=spent,
        scale=scale,
        sensitivity=sensitivity,
    )
