"""PDQ of overlapping regions of an image: the list side of crop matching (issue 18).

A copy cropped by a share c of each side *is* the listed image's region inside those margins, so
the copy's whole-image PDQ matches the PDQ of that region of the original. A list entry built
with ``libra hash --regions`` carries the PDQ of the regions in ``REGIONS`` as derived data; the
node indexes them beside the entries' own hashes and reports such matches as method "region".
The set below was chosen by measurement (benchmarks/bench_robust.py, docs/benchmarks.md):
PDQ tolerates only about 1.5-2 % of crop per side (5 % already costs 80+ bits), so the margins
step by 2.5 % up to 25 %: a centred crop between two steps lands within the match distance of
one of them. Off-centre crops are not covered (a 4-D grid of margins would be needed; measured
and documented in docs/robust-matching.md).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from .pdq import pdq_from_luma, pdq_hex

THUMBNAIL_SIDE: Final = 512

# (left, top, right, bottom) margins as shares of the width and height.
REGIONS: Final[tuple[tuple[float, float, float, float], ...]] = tuple(
    (m, m, m, m) for m in (0.025 * step for step in range(1, 11))
)


def crop_target(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) a crop of ``shape`` (rows, columns) gets when thumbnailed to 512 px."""
    height, width = shape[0], shape[1]
    scale = min(1.0, THUMBNAIL_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def region_hashes(
    pixels: npt.NDArray[np.uint8],
    regions: tuple[tuple[float, float, float, float], ...] = REGIONS,
    min_quality: int = 50,
) -> list[str]:
    """PDQ (hex) of each region of the luminance ``pixels`` whose quality reaches
    ``min_quality``: a flat region would only add collisions."""
    height, width = pixels.shape
    out: list[str] = []
    for left, top, right, bottom in regions:
        x0, x1 = round(left * width), width - round(right * width)
        y0, y1 = round(top * height), height - round(bottom * height)
        if x1 - x0 < 16 or y1 - y0 < 16:
            continue
        crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        bits, quality = pdq_from_luma(crop, crop_target(crop.shape))
        if quality >= min_quality:
            out.append(pdq_hex(bits))
    return out
