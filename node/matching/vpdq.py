"""vPDQ video comparison, as Meta defines it (ThreatExchange ``vpdq/README.md``).

A video's vPDQ hash is a bag of frames, each (frame number, timestamp, PDQ, quality). Two
videos are compared without regard to frame order or timing:

1. each side keeps only frames of quality >= ``min_quality`` (50), then only one frame per
   distinct PDQ hash;
2. a frame of one side "matches" when any frame of the other side is within PDQ Hamming
   distance ``max_distance`` (31, inclusive);
3. ``query_match_percent`` = matched query frames * 100 / query frames, and
   ``compared_match_percent`` the same for the listed (compared) video;
4. the videos match when both percentages reach their thresholds (80 / 80 here; both
   configurable; Meta's README uses 80 for the compared side and shows 0 for the query side).

Where Meta's own implementations differ, this follows its README and python-threatexchange
(the versions HMA runs), and says so:

- distance: ``<= max_distance`` (README, python-threatexchange); the C++ brute-force tool
  counts ``< distance`` instead.
- quality filter before deduplication (python-threatexchange's index does this; its brute
  matcher dedupes first). Filtering first makes the result independent of frame order: a hash
  counts when any of its frames is good enough.
- a side with no frame left after filtering gives 0 % / 0 % and no match (the C++ tool's
  rule; python-threatexchange divides by zero there).
- a match also needs at least one matching frame pair. With thresholds above 0 this changes
  nothing; with a threshold of 0 (allowed) it is what python-threatexchange's index does, and
  it is what lets node.matching.video_index find every match through a frame index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from protocol.hashes import FAMILIES, PDQ_MIN_QUALITY, HashFamily, normalize

PDQ_BITS = 256
WORDS = PDQ_BITS // 64
DEFAULT_MAX_DISTANCE = FAMILIES[HashFamily.PDQ].default_max_distance  # 31, as vPDQ
DEFAULT_MIN_QUALITY = PDQ_MIN_QUALITY  # 50, as vPDQ
DEFAULT_MATCH_PERCENT = 80.0
U64 = npt.NDArray[np.uint64]
# A frame as it travels: (frame number, timestamp in seconds, PDQ as 64 hex digits, quality).
FrameTuple = tuple[int, float, str, int]
_LOWER_HEX = re.compile(r"[0-9a-f]*")


class Frame(NamedTuple):
    """One hashed frame of a video (the wire order of the function's video hashes)."""

    number: int
    timestamp: float
    pdq: str
    quality: int


class FrameFields(Protocol):
    """Any object with a frame's four fields, e.g. protocol.models.VideoFrame (the function's
    wire model), without this module depending on it."""

    @property
    def frame(self) -> int: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def pdq(self) -> str: ...
    @property
    def quality(self) -> int: ...


def as_frames(items: Iterable[FrameFields]) -> list[Frame]:
    """Frames from objects carrying ``frame``, ``timestamp``, ``pdq`` and ``quality``."""
    return [Frame(i.frame, i.timestamp, i.pdq, i.quality) for i in items]


@dataclass(frozen=True)
class VpdqSettings:
    """The comparison's four parameters (Meta's D, F, P_q and P_c)."""

    max_distance: int = DEFAULT_MAX_DISTANCE
    min_quality: int = DEFAULT_MIN_QUALITY
    query_match_percent: float = DEFAULT_MATCH_PERCENT
    compared_match_percent: float = DEFAULT_MATCH_PERCENT

    def __post_init__(self) -> None:
        if not 0 <= self.max_distance <= PDQ_BITS:
            raise ValueError(f"vPDQ frame distance must be 0..{PDQ_BITS}, got {self.max_distance}")
        if not 0 <= self.min_quality <= 100:
            raise ValueError(f"vPDQ quality filter must be 0..100, got {self.min_quality}")
        for name in ("query_match_percent", "compared_match_percent"):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"vPDQ {name} must be 0..100, got {value}")


@dataclass(frozen=True)
class VpdqResult:
    """Both sides' shares of matched distinct frames (percent, 0..100) and the verdict."""

    query_match_percent: float
    compared_match_percent: float
    query_frames: int  # distinct frames of the query that passed the quality filter
    compared_frames: int
    is_match: bool


def pack(values: Sequence[str]) -> U64:
    """Normalised PDQ hex strings -> (n, 4) array of big-endian 64-bit words (the layout of
    node.matching.matcher.pack, so codes can go into the same MultiIndex)."""
    if not values:
        return np.zeros((0, WORDS), dtype=np.uint64)
    raw = bytes.fromhex("".join(values))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(values), WORDS)


def distinct_frames(
    frames: Iterable[FrameTuple], min_quality: int = DEFAULT_MIN_QUALITY
) -> list[Frame]:
    """The frames that take part in a comparison: quality >= ``min_quality``, the first frame
    of each distinct PDQ hash (lowercase). A malformed PDQ raises protocol.hashes.InvalidHash
    (a ValueError)."""
    seen: set[str] = set()
    out: list[Frame] = []
    for number, timestamp, pdq, quality in frames:
        if quality < min_quality:
            continue
        value = normalize(HashFamily.PDQ, pdq)
        if value not in seen:
            seen.add(value)
            out.append(Frame(number, timestamp, value, quality))
    return out


def distinct_codes(
    frames: Iterable[FrameTuple], min_quality: int = DEFAULT_MIN_QUALITY
) -> tuple[U64, list[int]]:
    """``distinct_frames`` packed: (codes, frame number of each). The same result, faster:
    one check of all hashes at once for the usual input (lowercase hex, as the function and
    the list formats write it), per frame only when that check fails (to name the bad value,
    or to fold case and blanks the way protocol.hashes.normalize does)."""
    frames = list(frames)
    first: dict[str, int] = {}
    for number, _, pdq, quality in frames:
        if quality >= min_quality and pdq not in first:
            first[pdq] = number
    if all(len(v) == 64 for v in first) and _LOWER_HEX.fullmatch("".join(first)):
        return pack(list(first)), list(first.values())
    kept = distinct_frames(frames, min_quality)
    return pack([f.pdq for f in kept]), [f.number for f in kept]


def prepare(frames: Iterable[FrameTuple], min_quality: int = DEFAULT_MIN_QUALITY) -> U64:
    """The packed codes of ``distinct_frames`` (what a comparison needs of one side)."""
    return distinct_codes(frames, min_quality)[0]


def near_pairs(query: U64, compared: U64, max_distance: int) -> npt.NDArray[np.bool_]:
    """(len(query), len(compared)) matrix: is the pair within ``max_distance``? Blocks of the
    query keep the temporary XOR array near 4M words however long both videos are."""
    out = np.zeros((query.shape[0], compared.shape[0]), dtype=bool)
    step = max(1, 1_000_000 // max(1, compared.shape[0]))
    for start in range(0, query.shape[0], step):
        block = query[start : start + step]
        d = np.bitwise_count(block[:, None, :] ^ compared[None, :, :]).sum(axis=2)
        out[start : start + step] = d <= max_distance
    return out


def compare_prepared(query: U64, compared: U64, settings: VpdqSettings | None = None) -> VpdqResult:
    """Compare two prepared sides (``prepare``): both shares and the verdict."""
    s = settings or VpdqSettings()
    nq, nc = query.shape[0], compared.shape[0]
    if nq == 0 or nc == 0:
        return VpdqResult(0.0, 0.0, nq, nc, False)
    near = near_pairs(query, compared, s.max_distance)
    q_matched = int(near.any(axis=1).sum())
    c_matched = int(near.any(axis=0).sum())
    # Meta's arithmetic (count * 100 / n), so shares equal its tools' to the last bit.
    q_pct = q_matched * 100.0 / nq
    c_pct = c_matched * 100.0 / nc
    verdict = q_matched > 0 and q_pct >= s.query_match_percent and c_pct >= s.compared_match_percent
    return VpdqResult(q_pct, c_pct, nq, nc, verdict)


def compare(
    query: Iterable[FrameTuple],
    compared: Iterable[FrameTuple],
    settings: VpdqSettings | None = None,
) -> VpdqResult:
    """vPDQ comparison of a query video with a compared (listed) video."""
    s = settings or VpdqSettings()
    return compare_prepared(prepare(query, s.min_quality), prepare(compared, s.min_quality), s)
