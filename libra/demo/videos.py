"""The demo world's videos (issue 13): the listed synthetic videos, the copies of them that the
synthetic web carries, stills taken from them, and unrelated benign videos.

Every guarantee the truth relies on is checked here while the world is built, with the
function's own hashing (worker_function.video.decode.hash_video, worker_function.hashing) and
the node's own vPDQ comparison at its default settings (node.matching.vpdq): each copy matches
its listed video, each still is within the vPDQ frame distance of a frame of its video, the
listed videos are far from one another, and no benign video has a frame near a listed one. The
bytes stay in memory (videogen muxes into BytesIO).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from libra.demo import videogen
from node.matching.vpdq import VpdqResult, VpdqSettings, compare
from protocol.hashes import hamming
from worker_function.hashing import hash_image
from worker_function.video.decode import hash_video

# Small and short: all of them together are made and hashed in about a second.
LISTED: Final = 4
SECONDS: Final = 6.0  # 6 frames at the function's default 1 frame a second
FPS: Final = 12
SIZES: Final = ((320, 180), (240, 136))
BENIGN: Final = 3
BENIGN_CONTAINERS: Final = ("webm", "avi", "mov")
# How a placed copy differs from the listed video (Placement.variant of the world):
REENCODE: Final = "reencode"  # MPEG-4 Part 2 instead of H.264, same container and size
RESIZE: Final = "resize"  # H.264 at 60 % of each side
TRIM: Final = "trim"  # the first SECONDS - TRIM_SECONDS only
REMUX_MKV: Final = "remux-mkv"  # the same packets in Matroska (no re-encoding)
REMUX_MOV: Final = "remux-mov"  # the same packets in QuickTime
WEBM: Final = "webm"  # VP8 in WebM: another container and another codec
COPY_KINDS: Final = (REENCODE, RESIZE, TRIM, REMUX_MKV, REMUX_MOV, WEBM)
TRIM_SECONDS: Final = 1.0  # 5 of 6 listed frames left: 83 % >= the node's 80 %
STILL_AT: Final = 2.0  # seconds into the video
# A benign video's frames and a still's distance to other material: far beyond the vPDQ frame
# distance (31), so that no threshold setting near the default makes them match.
FAR: Final = 64
STILL_MAX_DISTANCE: Final = 16  # a still is this close to a frame of its video
MIN_QUALITY: Final = 50  # the vPDQ quality filter (node default)
_ATTEMPTS: Final = 20

Frames = tuple[tuple[int, float, str, int], ...]  # vPDQ's (frame, timestamp, pdq, quality)


class VideoWorldError(ValueError):
    """A video, copy or still that could not meet its guarantee."""


@dataclass(frozen=True)
class ListedVideo:
    video_id: str  # "video-0"
    data: bytes  # the original bytes (an agency's reference file)
    frames: Frames  # its vPDQ, as the function computes it


def vpdq_of(data: bytes) -> Frames:
    """The video's sampled frames as the function hashes them (1 frame a second)."""
    video = hash_video(data).video
    return tuple((f.frame, f.timestamp, f.pdq, f.quality) for f in video.frames)


def vpdq_match(copy: Frames, listed: Frames) -> VpdqResult:
    """The node's comparison of a found video with a listed one, at the node's defaults."""
    return compare(copy, listed, VpdqSettings())


def nearest_frame(pdq: str, videos: Iterable[ListedVideo]) -> int:
    """The smallest PDQ distance of ``pdq`` to a frame of any of ``videos`` (256: none)."""
    return min((hamming(pdq, f[2]) for v in videos for f in v.frames), default=256)


def _seed(world_seed: int, *parts: int) -> int:
    return int(np.random.default_rng([world_seed, 13, *parts]).integers(0, 2**31))


def listed_videos(world_seed: int, count: int = LISTED) -> list[ListedVideo]:
    """``count`` listed videos: good frame quality, no frame of one near a frame of another."""
    out: list[ListedVideo] = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        for attempt in range(_ATTEMPTS):
            data = videogen.make_video(
                width, height, SECONDS, FPS, "mp4", seed=_seed(world_seed, 1, i, attempt)
            )
            frames = vpdq_of(data)
            if all(f[3] >= MIN_QUALITY for f in frames) and all(
                nearest_frame(f[2], out) >= FAR for f in frames
            ):
                out.append(ListedVideo(f"video-{i}", data, frames))
                break
        else:
            raise VideoWorldError(f"could not make listed video {i} far from the others")
    return out


def make_copy(video: ListedVideo, kind: str) -> bytes:
    """A copy of ``video`` of ``kind`` (COPY_KINDS) that the node matches by vPDQ."""
    width, height = SIZES[int(video.video_id.rsplit("-", 1)[1]) % len(SIZES)]
    if kind == REENCODE:
        data = videogen.transcode(video.data, "mp4", codec="mpeg4")
    elif kind == RESIZE:
        w, h = (round(width * 0.3) * 2, round(height * 0.3) * 2)
        data = videogen.transcode(video.data, "mp4", width=w, height=h)
    elif kind == TRIM:
        data = videogen.transcode(video.data, "mp4", seconds=SECONDS - TRIM_SECONDS)
    elif kind == REMUX_MKV:
        data = videogen.remux(video.data, "mkv")
    elif kind == REMUX_MOV:
        data = videogen.remux(video.data, "mov")
    elif kind == WEBM:
        data = videogen.transcode(video.data, "webm")
    else:
        raise VideoWorldError(f"unknown video copy kind {kind!r} (one of {COPY_KINDS})")
    result = vpdq_match(vpdq_of(data), video.frames)
    if data == video.data or not result.is_match:
        raise VideoWorldError(f"the {kind} copy of {video.video_id} does not match: {result}")
    return data


def make_still(video: ListedVideo, pool_pdq: Iterable[int]) -> bytes:
    """A PNG of the frame at STILL_AT: near a frame of ``video``, far from every pool image
    (so that the node finds it as ``vpdq-frame``, not as a copy of a listed image)."""
    data = videogen.still_png(video.data, STILL_AT)
    hashes = hash_image(data).hashes
    distance = nearest_frame(hashes.pdq, [video])
    value = int(hashes.pdq, 16)
    if (
        hashes.pdq_quality < MIN_QUALITY
        or distance > STILL_MAX_DISTANCE
        or any((value ^ other).bit_count() < FAR for other in pool_pdq)
    ):
        raise VideoWorldError(
            f"the still of {video.video_id} is {distance} from its frames "
            f"(quality {hashes.pdq_quality}) or near a pool image"
        )
    return data


def benign_videos(world_seed: int, listed: Sequence[ListedVideo]) -> list[bytes]:
    """Unrelated videos: no frame within FAR of any listed video's frame."""
    out: list[bytes] = []
    for i in range(BENIGN):
        width, height = SIZES[(i + 1) % len(SIZES)]
        container = BENIGN_CONTAINERS[i % len(BENIGN_CONTAINERS)]
        for attempt in range(_ATTEMPTS):
            seconds = 3.0 + i  # other lengths than the listed ones
            data = videogen.make_video(
                width, height, seconds, FPS, container, seed=_seed(world_seed, 2, i, attempt)
            )
            if all(nearest_frame(f[2], listed) >= FAR for f in vpdq_of(data)):
                out.append(data)
                break
        else:
            raise VideoWorldError(f"could not make benign video {i} far from the listed ones")
    return out


def far_from_videos(pdq: str, listed: Sequence[ListedVideo]) -> bool:
    """Whether an image with this PDQ is safe from a vpdq-frame match with ``listed``."""
    return nearest_frame(pdq, listed) >= FAR
