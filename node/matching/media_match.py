"""Match function results (images and videos) against the node's lists, the crawl's way.

One place for the rules node/cycle.py ``_Cycle._match`` follows (issue 13), so the notice
re-check (node/notices/recheck.py) finds a noticed copy by the same routes that found it:

- an image: the image index (MatchIndex); a frame of a listed video (``vpdq-frame``, through
  the VideoIndex) when the image index finds nothing;
- a video: its bytes' digests against the index's exact families (``video-sha256`` >
  ``video-sha1`` > ``video-md5``), else vPDQ against the listed videos (``vpdq``). A video
  never goes through the image index's perceptual families.

``best_matches`` is the cycle's answer (the strongest match of each result and its report
family); ``matched_entries`` is the re-check's (every list entry a result still matches, by
every route that can reach the entry asked about).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from node.matching.matcher import Match, MatchIndex, Method, best
from node.matching.video_index import VideoIndex
from node.matching.vpdq import as_frames
from protocol.hashes import HashFamily, ReportFamily
from protocol.models import HashResult

# A video's bytes found in a list's exact families: the report family of the match.
VIDEO_EXACT = (
    (HashFamily.SHA256, ReportFamily.VIDEO_SHA256),
    (HashFamily.SHA1, ReportFamily.VIDEO_SHA1),
    (HashFamily.MD5, ReportFamily.VIDEO_MD5),
)
# Report families whose entry is a listed video's vPDQ (reached only through a VideoIndex).
VPDQ_FAMILIES = frozenset({ReportFamily.VPDQ.value, ReportFamily.VPDQ_FRAME.value})

Found = tuple[Match, str]  # a match and the report family (a ReportFamily value) it counts under
_FRAME = ReportFamily.VPDQ_FRAME.value
_VPDQ = ReportFamily.VPDQ.value


def exact_video(index: MatchIndex, result: HashResult) -> list[Found]:
    """Every exact match of a video's bytes, strongest family first (one lookup per family:
    videos are few next to images, so they are not batched)."""
    out: list[Found] = []
    for family, report in VIDEO_EXACT:
        value: str = getattr(result.hashes, family.value)  # md5 / sha1 / sha256 field
        if value:
            out += [(m, report.value) for m in index.lookup(family, [value.lower()])[0]]
    return out


def frame_hits(videos: VideoIndex, stills: Sequence[HashResult]) -> list[list[Found]]:
    """For each image, the listed videos one of whose frames it is (``vpdq-frame``), nearest
    first. The Match carries the frame's PDQ distance."""
    queries = [(r.hashes.pdq, r.hashes.pdq_quality) for r in stills]
    return [
        [(Match(f.video_id, HashFamily.PDQ, f.distance, Method.DIRECT), _FRAME) for f in frames]
        for frames in videos.match_frames(queries)
    ]


def vpdq_hits(videos: VideoIndex, clips: Sequence[HashResult]) -> list[list[Found]]:
    """For each video, the listed videos it matches under vPDQ, strongest first. Distance 0:
    a vPDQ match is a share of matched frames, not one Hamming distance."""
    queries = [as_frames(r.video.frames) if r.video is not None else [] for r in clips]
    return [
        [(Match(v.video_id, HashFamily.PDQ, 0, Method.DIRECT), _VPDQ) for v in found]
        for found in videos.match_many(queries)
    ]


def best_matches(
    index: MatchIndex, videos: VideoIndex | None, results: Sequence[HashResult]
) -> list[Found | None]:
    """The strongest match of each result with its report family, or None (the rules of
    ``_Cycle._match``: the image index before frames, exact digests before vPDQ)."""
    out: list[Found | None] = [None] * len(results)
    images = [n for n, r in enumerate(results) if r.video is None]
    clips = [n for n, r in enumerate(results) if r.video is not None]
    if images:
        found = index.match_many([results[n].hashes for n in images])
        for n, matches in zip(images, found, strict=True):
            top = best(matches)
            out[n] = None if top is None else (top, top.family.value)
    unmatched = [n for n in images if out[n] is None]
    if videos is not None and unmatched:
        hits = frame_hits(videos, [results[n] for n in unmatched])
        for n, frames in zip(unmatched, hits, strict=True):
            out[n] = frames[0] if frames else None
    for n in clips:
        exact = exact_video(index, results[n])
        out[n] = exact[0] if exact else None
    pending = [n for n in clips if out[n] is None]
    if videos is not None and pending:
        hits = vpdq_hits(videos, [results[n] for n in pending])
        for n, listed in zip(pending, hits, strict=True):
            out[n] = listed[0] if listed else None
    return out


def matched_entries(
    index: MatchIndex,
    videos: VideoIndex | None,
    results: Sequence[HashResult],
    wanted: Sequence[int],
    listed_videos: Collection[int] = frozenset(),
) -> list[bool]:
    """Whether each result still matches list entry ``wanted[n]`` by any route the crawl
    uses for its kind (an image: image index, then frames; a video: exact digests, then vPDQ).

    ``listed_videos``: entries that are listed videos' vPDQ (only the VideoIndex can reach
    them); the VideoIndex is consulted only for those, so re-checking images of an image list
    costs what it did before videos existed."""
    if len(wanted) != len(results):
        raise ValueError(f"{len(results)} results but {len(wanted)} entries to look for")
    out = [False] * len(results)
    images = [n for n, r in enumerate(results) if r.video is None]
    if images:
        found = index.match_many([results[n].hashes for n in images])
        for n, matches in zip(images, found, strict=True):
            out[n] = any(m.entry_id == wanted[n] for m in matches)
    for n, r in enumerate(results):
        if r.video is not None:
            out[n] = any(m.entry_id == wanted[n] for m, _ in exact_video(index, r))
    if videos is None:
        return out
    frames = [n for n in images if not out[n] and wanted[n] in listed_videos]
    for n, hits in zip(frames, frame_hits(videos, [results[n] for n in frames]), strict=True):
        out[n] = any(m.entry_id == wanted[n] for m, _ in hits)
    clips = [
        n
        for n, r in enumerate(results)
        if r.video is not None and not out[n] and wanted[n] in listed_videos
    ]
    for n, hits in zip(clips, vpdq_hits(videos, [results[n] for n in clips]), strict=True):
        out[n] = any(m.entry_id == wanted[n] for m, _ in hits)
    return out
