"""coordinator.dp.release: the total derived from two partitions' noisy sums."""

from __future__ import annotations

import math

from coordinator.dp.mechanism import noisy_counts, standard_deviation
from coordinator.dp.release import SENSITIVITY, total_of


def test_total_weights_the_partitions_by_their_cells() -> None:
    # 11 families summing to 110, one period of 100: weights 1/12 and 11/12.
    assert total_of([10] * 11, [100]) == round((110 + 11 * 100) / 12) == 101
    assert total_of([5, 5], [6, 6]) == 11  # equal cell counts: the plain mean
    assert total_of([3, 4], []) == 7  # no report counted: the families alone
    assert total_of([], [5]) == 5  # no family allowed by the filters
    assert total_of([], []) == 0
    assert total_of([-9, 1], [-3]) == 0  # rounded to be non-negative


def test_total_is_unbiased_with_less_noise_than_either_sum() -> None:
    draws, families, true = 2000, 11, 1000
    vector = [true] + [0] * (families - 1) + [true]  # families..., then one period
    totals = []
    for _ in range(draws):
        raw = noisy_counts(vector, epsilon=1.0, sensitivity=SENSITIVITY)
        totals.append(total_of(raw.raw[:families], raw.raw[families:]))
    variance = standard_deviation(raw.scale) ** 2
    expected = variance * families / (families + 1)  # vs 11 x variance for the families' sum
    mean = sum(totals) / draws
    observed = sum((t - true) ** 2 for t in totals) / draws
    assert abs(mean - true) < 5 * math.sqrt(expected / draws)
    assert 0.8 * expected < observed < 1.25 * expected + 1 / 12  # + rounding to an integer
