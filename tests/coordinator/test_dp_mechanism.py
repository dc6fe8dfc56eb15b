"""coordinator.dp.mechanism: the scale OpenDP is asked for, and the noise it draws.

OpenDP samples with a secure RNG and takes no seed, so the distribution is checked
statistically with bounds (5 standard errors over 2,000 draws) that a correct sampler
essentially never misses and a wrong scale or a missing noise term always does."""

from __future__ import annotations

import math

import pytest

from coordinator.dp.mechanism import (
    MechanismError,
    _measurement,
    noisy_counts,
    scale_for,
    standard_deviation,
)

DRAWS = 2000


@pytest.mark.parametrize(
    ("epsilon", "sensitivity", "expected"),
    [(1.0, 1, 1.0), (1.0, 3, 3.0), (0.5, 3, 6.0), (2.0, 1, 0.5), (0.1, 7, 70.0)],
)
def test_scale_is_sensitivity_over_epsilon(
    epsilon: float, sensitivity: int, expected: float
) -> None:
    assert scale_for(epsilon, sensitivity) == expected
    assert _measurement(expected).map(sensitivity) <= epsilon


@pytest.mark.parametrize(("epsilon", "sensitivity"), [(0.3, 3), (1.7, 3)])
def test_scale_is_nudged_until_opendp_agrees(epsilon: float, sensitivity: int) -> None:
    # OpenDP's privacy map rounds up: sensitivity/epsilon itself maps slightly above epsilon.
    naive = sensitivity / epsilon
    assert _measurement(naive).map(sensitivity) > epsilon
    scale = scale_for(epsilon, sensitivity)
    assert _measurement(scale).map(sensitivity) <= epsilon
    assert naive < scale < naive * (1 + 1e-12)  # the smallest step that is enough
    assert _measurement(math.nextafter(scale, 0.0)).map(sensitivity) > epsilon


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.nan, math.inf])
def test_bad_epsilon_is_refused(epsilon: float) -> None:
    with pytest.raises(MechanismError, match="epsilon"):
        noisy_counts([1], epsilon=epsilon, sensitivity=1)


def test_bad_sensitivity_and_counts_are_refused() -> None:
    with pytest.raises(MechanismError, match="sensitivity"):
        scale_for(1.0, 0)
    for bad in (-1, True, 1.5, 2**62):
        with pytest.raises(MechanismError, match="count"):
            noisy_counts([3, bad], epsilon=1.0, sensitivity=1)  # type: ignore[list-item]


def test_empty_release() -> None:
    assert noisy_counts([], epsilon=1.0, sensitivity=3).values == []


@pytest.mark.parametrize(("epsilon", "sensitivity"), [(1.0, 3), (1.0, 1), (0.25, 1)])
def test_noise_has_the_discrete_laplace_spread(epsilon: float, sensitivity: int) -> None:
    true = 10_000  # far from 0: the non-negative rounding never applies
    released = noisy_counts([true] * DRAWS, epsilon=epsilon, sensitivity=sensitivity)
    assert released.scale == scale_for(epsilon, sensitivity)
    assert released.epsilon <= epsilon
    noise = [v - true for v in released.values]
    # Discrete Laplace, alpha = exp(-1/b): E|X| = 2 alpha / (1 - alpha^2), E X^2 = sd^2.
    alpha = math.exp(-1.0 / released.scale)
    mean_abs = 2 * alpha / (1 - alpha**2)
    sd = standard_deviation(released.scale)
    sd_abs = math.sqrt(sd**2 - mean_abs**2)
    observed_abs = sum(abs(x) for x in noise) / DRAWS
    assert abs(observed_abs - mean_abs) < 5 * sd_abs / math.sqrt(DRAWS)
    assert abs(sum(noise) / DRAWS) < 5 * sd / math.sqrt(DRAWS)  # unbiased
    observed_sd = math.sqrt(sum(x * x for x in noise) / DRAWS)
    assert 0.8 * sd < observed_sd < 1.2 * sd


def test_small_counts_are_rounded_to_non_negative() -> None:
    released = noisy_counts([0] * DRAWS, epsilon=1.0, sensitivity=3)
    assert min(released.values) == 0
    assert max(released.values) > 0  # noise was added
    # Half the draws are negative and become 0, plus those that were exactly 0.
    zeros = released.values.count(0) / DRAWS
    alpha = math.exp(-1.0 / released.scale)
    expected = 0.5 + 0.5 * (1 - alpha) / (1 + alpha)
    assert abs(zeros - expected) < 5 * math.sqrt(expected * (1 - expected) / DRAWS)
