"""Find uniform or near-uniform borders (frames, letterbox and pillarbox bars) to trim before
hashing, so that a bordered copy hashes like the image inside it (issue 18).

A side's outermost line sets the border's luminance (its median). Lines are peeled from that
side while at least ``BorderRule.min_share`` of their pixels lie within ``BorderRule.tolerance``
luminance levels of it: "near-uniform" tolerates JPEG ringing, noise and a thin anti-aliased
edge. Each side is trimmed on its own (a letterbox has two bars, a frame four, a border may be
of any width). Nothing is trimmed when the result would be small (an almost flat image is not
a bordered one) or when every cut is negligible (the trimmed hash would equal the original's).
Runs on the <= 512 px luminance thumbnail: a few vector operations per side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class BorderRule:
    # Luminance levels (0-255) a border pixel may differ from the border's median.
    tolerance: int = 24
    # Share of a line's pixels that must be within tolerance for the line to be border.
    min_share: float = 0.98
    # A cut under this share of the side's length is ignored (PDQ does not notice it).
    min_cut: float = 0.02
    # What is left must keep at least this share of each side (else: flat image, no trim).
    min_keep: float = 0.3


DEFAULT_RULE = BorderRule()
_LEVELS = np.arange(256, dtype=np.int16)


@dataclass(frozen=True)
class Box:
    """Rows top..bottom-1 and columns left..right-1 of the image to keep."""

    top: int
    bottom: int
    left: int
    right: int


def _within(colour: int, rule: BorderRule) -> npt.NDArray[np.bool_]:
    """Per luminance level 0-255: within ``rule.tolerance`` of ``colour`` or not."""
    return np.abs(_LEVELS - colour) <= rule.tolerance


def _share_within(
    lines: npt.NDArray[np.uint8], close: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Per line (row of ``lines``): the share of its pixels whose level ``close`` marks.

    Counted and divided by the width: the same float64 values as the mean of the booleans
    (an exact integer sum divided by the same width), without numpy's mean machinery."""
    counts = np.count_nonzero(close[lines], axis=1)
    share: npt.NDArray[np.float64] = counts / lines.shape[1]
    return share


def _lower_median(line: npt.NDArray[np.uint8]) -> int:
    """``int(np.median(line))`` of uint8 levels: the mean of the two middle values for an even
    length, truncated (a tenth of np.median's cost on a short line)."""
    size = line.shape[0]
    middle = size // 2
    if size % 2:
        return int(np.partition(line, middle)[middle])
    low, high = np.partition(line, (middle - 1, middle))[middle - 1 : middle + 1]
    return (int(low) + int(high)) // 2


def _peel(lines: npt.NDArray[np.uint8], rule: BorderRule) -> int:
    """How many leading lines (rows of ``lines``) are border of the first line's colour."""
    close = _within(_lower_median(lines[0]), rule)
    # Most images have no border: the outermost line alone settles it, nothing else is read.
    if _share_within(lines[:1], close)[0] < rule.min_share:
        return 0
    # A border never takes more than (1 - min_keep) of a side: look no further.
    within = _share_within(lines[: int((1.0 - rule.min_keep) * lines.shape[0]) + 1], close)
    failing = np.flatnonzero(within < rule.min_share)
    return int(failing[0]) if failing.size else within.shape[0]  # all border: flat, refused


def border_box(luma: npt.NDArray[np.uint8], rule: BorderRule = DEFAULT_RULE) -> Box | None:
    """The part of ``luma`` inside its uniform borders, or None if there is nothing to trim."""
    height, width = luma.shape
    if height < 8 or width < 8:
        return None
    pixels = luma  # uint8 views below; levels are looked up, never widened
    top = _peel(pixels, rule)
    bottom = height - _peel(pixels[::-1], rule)
    if bottom - top < rule.min_keep * height:
        return None
    # Columns only over the kept rows: bars of another colour above and below do not count.
    columns = pixels[top:bottom].T
    left = _peel(columns, rule)
    right = width - _peel(columns[::-1], rule)
    if right - left < rule.min_keep * width:
        return None
    cuts = (top / height, (height - bottom) / height, left / width, (width - right) / width)
    if max(cuts) < rule.min_cut:
        return None
    return Box(top, bottom, left, right)
