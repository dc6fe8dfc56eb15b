"""An index of listed videos for vPDQ matching, and for finding a single frame as an image.

vPDQ compares two videos frame by frame (node.matching.vpdq); against a list of many videos
a linear comparison costs (listed frames x query frames). Meta's README suggests a frame
index as a candidate stage; here it is the node's exact PDQ multi-index (MultiIndex), so the
stage loses nothing:

1. every distinct frame (quality >= the filter) of every listed video goes into one
   MultiIndex, under a serial number; each video owns a contiguous range of serials;
2. a query video's distinct frames are searched at the frame distance: the videos owning a
   frame within reach of some query frame are the candidates;
3. each candidate gets the exact vPDQ comparison.

Exactness: a video with no frame within the distance of any query frame has 0 % matched on
both sides, and vpdq.compare never calls that a match (see its module text), so the answers
equal a comparison against every listed video (tests/node/test_video_index.py checks this
against brute force).

The same index answers single-frame lookups: an image whose PDQ is within the distance of a
frame of a listed video is a ``vpdq-frame`` match (stills taken from known videos).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from node.matching.index import MultiIndex
from node.matching.vpdq import (
    PDQ_BITS,
    U64,
    FrameTuple,
    VpdqResult,
    VpdqSettings,
    compare_prepared,
    distinct_codes,
    pack,
    prepare,
)
from protocol.hashes import HashFamily, InvalidHash, normalize

VPDQ_FRAME_FAMILY = "vpdq-frame"
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class VideoMatch:
    """A listed video and how a query video compared with it."""

    video_id: int
    result: VpdqResult


@dataclass(frozen=True)
class FrameMatch:
    """A listed video one of whose frames is within the distance of a query image's PDQ
    (its nearest such frame: smallest distance, then first frame number)."""

    video_id: int
    frame: int
    distance: int


@dataclass(frozen=True)
class _Listed:
    codes: U64  # distinct frames that pass the quality filter, in frame order
    frames: I64  # the frame number of each code (its first frame)
    first: int  # serial of codes[0] in the frame index


def _strength(match: VideoMatch) -> tuple[float, float, int]:
    r = match.result
    return (-r.compared_match_percent, -r.query_match_percent, match.video_id)


class VideoIndex:
    """Listed videos (video id -> frames) ready for vPDQ and single-frame matching."""

    def __init__(self, settings: VpdqSettings | None = None, *, merge_at: int = 4096) -> None:
        self.settings = settings or VpdqSettings()
        # Frames added after the first build wait in the MultiIndex's brute-force tail until
        # ``merge_at`` of them have come, then one table rebuild merges them.
        self._merge_at = merge_at
        self._frames = MultiIndex(PDQ_BITS, merge_at=merge_at)
        self._videos: dict[int, _Listed] = {}
        # Serial -> owner: the first serial of every range handed out (ascending), and the
        # video that got it. Ranges of removed videos stay: their serials are tombstoned in
        # the MultiIndex and never come back from a search.
        self._starts: list[int] = []
        self._owners: list[int] = []
        self._owner_arrays: tuple[I64, I64] | None = None
        self._next = 0

    @classmethod
    def build(
        cls,
        videos: Iterable[tuple[int, Iterable[FrameTuple]]],
        settings: VpdqSettings | None = None,
        *,
        merge_at: int = 4096,
    ) -> VideoIndex:
        """One table build for all videos (``add`` of many small batches rebuilds often)."""
        index = cls(settings, merge_at=merge_at)
        index.add(videos)
        return index

    def add(self, videos: Iterable[tuple[int, Iterable[FrameTuple]]]) -> None:
        """Add (video id, frames) pairs; a listed id is replaced. A malformed PDQ raises
        protocol.hashes.InvalidHash and adds nothing."""
        # Each video packed as it comes (the hex strings of a 6M-frame list would take ~10x
        # the memory of the codes), then one array for all, which the videos keep views of.
        staged: dict[int, tuple[U64, I64]] = {}
        for video_id, frames in videos:
            packed, first_frames = distinct_codes(frames, self.settings.min_quality)
            staged[int(video_id)] = (packed, np.asarray(first_frames, dtype=np.int64))
        self.remove([v for v in staged if v in self._videos])
        parts = [codes for codes, _ in staged.values()]
        all_codes = np.concatenate(parts) if parts else pack([])
        first = self._next
        for video_id, (codes, numbers) in staged.items():
            at = self._next - first
            view = all_codes[at : at + codes.shape[0]]
            self._videos[video_id] = _Listed(view, numbers, self._next)
            self._starts.append(self._next)
            self._owners.append(video_id)
            self._next += codes.shape[0]
        del staged, parts
        self._owner_arrays = None
        if not all_codes.shape[0]:
            return
        serials = np.arange(first, self._next, dtype=np.int64)
        if self._frames.codes.shape[0] == 0:
            self._frames = MultiIndex.build(PDQ_BITS, serials, all_codes)
            self._frames.merge_at = self._merge_at
        else:
            self._frames.add(serials, all_codes)

    def remove(self, video_ids: Iterable[int]) -> int:
        """Remove listed videos; returns how many were listed."""
        serials: list[I64] = []
        removed = 0
        for video_id in video_ids:
            listed = self._videos.pop(int(video_id), None)
            if listed is None:
                continue
            removed += 1
            serials.append(np.arange(listed.first, listed.first + listed.codes.shape[0]))
        if serials:
            self._frames.remove(np.concatenate(serials))
        return removed

    def __len__(self) -> int:
        return len(self._videos)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._videos

    def listed(self) -> Iterator[tuple[int, U64]]:
        """(video id, its distinct quality-filtered frame codes) of every listed video."""
        for video_id, listed in self._videos.items():
            yield video_id, listed.codes

    @property
    def frame_count(self) -> int:
        """Distinct frames indexed (after the quality filter), over all listed videos."""
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        """The frame index plus the listed videos' own codes and frame numbers."""
        own = sum(v.codes.nbytes + v.frames.nbytes for v in self._videos.values())
        return self._frames.nbytes + own

    # ------------------------------------------------------------ lookups

    def _owners_of(self, serials: I64) -> I64:
        if self._owner_arrays is None:
            self._owner_arrays = (
                np.asarray(self._starts, dtype=np.int64),
                np.asarray(self._owners, dtype=np.int64),
            )
        starts, owners = self._owner_arrays
        return owners[np.searchsorted(starts, serials, side="right") - 1]

    def _search(self, codes: U64, radius: int) -> tuple[I64, I64, I64]:
        """(query row, serial, distance) of every indexed frame within ``radius``."""
        found = self._frames.search(codes, radius) if codes.shape[0] else []
        rows = [n for n, hits in enumerate(found) for _ in hits]
        serials = [s for hits in found for s, _ in hits]
        dists = [d for hits in found for _, d in hits]
        return (
            np.asarray(rows, dtype=np.int64),
            np.asarray(serials, dtype=np.int64),
            np.asarray(dists, dtype=np.int64),
        )

    def compare_many(self, queries: Sequence[Iterable[FrameTuple]]) -> list[list[VideoMatch]]:
        """For each query video, the vPDQ result against every candidate (every listed video
        sharing a near frame with it), matching or not, strongest first. One frame-index
        search for the whole batch."""
        s = self.settings
        prepared = [prepare(frames, s.min_quality) for frames in queries]
        owner_of_row = np.repeat(
            np.arange(len(prepared), dtype=np.int64), [p.shape[0] for p in prepared]
        )
        all_codes = np.concatenate(prepared) if prepared else np.zeros((0, 4), dtype=np.uint64)
        rows, serials, _ = self._search(all_codes, s.max_distance)
        pairs = set(
            zip(owner_of_row[rows].tolist(), self._owners_of(serials).tolist(), strict=True)
        )
        out: list[list[VideoMatch]] = [[] for _ in prepared]
        for query, video_id in sorted(pairs):
            listed = self._videos[video_id]
            out[query].append(
                VideoMatch(video_id, compare_prepared(prepared[query], listed.codes, s))
            )
        return [sorted(found, key=_strength) for found in out]

    def match_many(self, queries: Sequence[Iterable[FrameTuple]]) -> list[list[VideoMatch]]:
        """For each query video, the listed videos it matches under vPDQ, strongest first."""
        return [[m for m in found if m.result.is_match] for found in self.compare_many(queries)]

    def match(self, frames: Iterable[FrameTuple]) -> list[VideoMatch]:
        return self.match_many([frames])[0]

    def match_frames(
        self, images: Sequence[tuple[str, int]], max_distance: int | None = None
    ) -> list[list[FrameMatch]]:
        """For each image (PDQ hex, PDQ quality), the listed videos with a frame within
        ``max_distance`` (default: the vPDQ frame distance): family ``vpdq-frame``, nearest
        first. Images below the quality filter, or with a malformed PDQ, match nothing."""
        radius = self.settings.max_distance if max_distance is None else max_distance
        owners: list[int] = []
        values: list[str] = []
        for n, (pdq, quality) in enumerate(images):
            if quality < self.settings.min_quality:
                continue
            try:
                values.append(normalize(HashFamily.PDQ, pdq))
            except InvalidHash:
                continue
            owners.append(n)
        rows, serials, dists = self._search(pack(values), radius)
        best: list[dict[int, FrameMatch]] = [{} for _ in images]
        videos = self._owners_of(serials).tolist()
        for row, serial, dist, video_id in zip(
            rows.tolist(), serials.tolist(), dists.tolist(), videos, strict=True
        ):
            listed = self._videos[video_id]
            match = FrameMatch(video_id, int(listed.frames[serial - listed.first]), dist)
            held = best[owners[row]].get(video_id)
            if held is None or (dist, match.frame) < (held.distance, held.frame):
                best[owners[row]][video_id] = match
        return [
            sorted(found.values(), key=lambda m: (m.distance, m.video_id, m.frame))
            for found in best
        ]

    def match_frame(self, pdq: str, quality: int) -> list[FrameMatch]:
        return self.match_frames([(pdq, quality)])[0]
