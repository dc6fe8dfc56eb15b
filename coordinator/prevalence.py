"""Prevalence: matches per 10,000 images hashed, with a Wilson score interval (issue 16).

Counted only over reports that carried coverage (per-hoster denominators), so numerator and
denominator describe the same crawl. Wilson rather than the normal approximation because
prevalence is tiny (a handful of matches in many thousands of images), where the normal
interval collapses to zero width or goes negative. Figures are rounded to 4 decimals (per
10,000), far below any difference that matters, so JSON and CSV stay short and stable.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

CONFIDENCE = 0.95
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
PER = 10_000
DECIMALS = 4


class Prevalence(BaseModel):
    """``per_10k`` matches per 10,000 images hashed, with its 95 % Wilson interval."""

    model_config = ConfigDict(frozen=True)

    per_10k: float
    lower: float
    upper: float
    confidence: float = CONFIDENCE
    method: Literal["wilson"] = "wilson"


def prevalence(matches: int, images_hashed: int) -> Prevalence | None:
    """The prevalence of ``matches`` in ``images_hashed`` images; None without images.

    A node's matches at a hoster never exceed its images hashed there (the protocol checks
    it), so neither do sums; the proportion is capped at 1 all the same.
    """
    if images_hashed <= 0:
        return None
    n = images_hashed
    p = min(1.0, max(0, matches) / n)
    z2 = Z_95 * Z_95
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return Prevalence(
        per_10k=round(p * PER, DECIMALS),
        lower=round(max(0.0, centre - half) * PER, DECIMALS),
        upper=round(min(1.0, centre + half) * PER, DECIMALS),
    )


wilson = prevalence  # the method's name, for readers looking for it
