"""Video bytes in memory -> VideoDigest: vPDQ frame hashes under hard limits (issue 13).

Rules (docs/operations-function.md, Video):
1. The container is sniffed from magic bytes (video/sniff.py) and read by its own FFmpeg demuxer
   from an ``io.BytesIO``: no path, no temporary file, no other demuxer or protocol.
2. Before a frame is decoded: the codec must be on the allow-list, the declared frame size within
   ``max_frame_pixels`` and the declared duration within ``max_duration_seconds``.
3. While decoding, every frame counts against ``max_frames`` and ``max_total_pixels`` and is
   checked against ``max_frame_pixels`` and (by its timestamp) ``max_duration_seconds``: a
   container that lies in its header, or never ends, is stopped at the first frame over a cap.
   One decoder thread, one frame held at a time (plus the best one so far): bounded memory.
4. Frames are sampled by timestamp, one per ``frame_interval_seconds`` (0: every frame); each
   sampled frame's full-size luminance (video/luma.py) is hashed with the function's PDQ
   (worker_function/pdq.py), as Meta's vPDQ reference hashes each full frame.
5. Optionally a sampled frame within ``prune_distance`` of the last kept one is dropped.
6. ``hashes`` (the ImageHashes every result carries) are those of the best-quality sampled frame
   by the image rules, with its pdq/pdq_quality replaced by the frame's vPDQ values and the
   cryptographic hashes taken over the video's bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from io import BytesIO
from typing import TYPE_CHECKING

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from protocol.models import MAX_VIDEO_FRAMES, VideoFrame, VideoHashes

from ..errors import (
    DecodeFailed,
    FrameTooLarge,
    ImageError,
    NotAnImage,
    TooManyFrames,
    UnsupportedFormat,
    VideoTooLong,
    VideoTooManyPixels,
)
from ..hashing import ImageDigest, _compute_hashes
from ..pdq import pdq_from_luma, pdq_hex
from .luma import frame_luma, to_uint8
from .settings import VideoLimits
from .sniff import DEMUXERS, sniff_video

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

# Decoders a video may reach: the common web codecs. Anything else is unsupported_format.
ALLOWED_CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "libvpx", "libvpx-vp9", "av1", "libdav1d", "mpeg4"}
    | {"mpeg1video", "mpeg2video", "mjpeg"}
)
# Packets the decoder may reject (corruption) before the video as a whole is refused.
MAX_BAD_PACKETS = 16
# Demuxer probing stays small and bounded (bytes; microseconds).
_OPEN_OPTIONS = {"probesize": str(5 * 1024 * 1024), "analyzeduration": str(5_000_000)}
_EPSILON = 1e-6  # timestamps are rational: no frame is skipped for a rounding error


@dataclass(frozen=True)
class VideoDigest(ImageDigest):
    """An ImageDigest (its ``format`` the container) with the video's frame hashes."""

    video: VideoHashes = field(kw_only=True)


def hash_video(data: bytes, *, limits: VideoLimits | None = None) -> VideoDigest:
    """Hash a video held in memory. Raises only ``ImageError`` subclasses on bad input."""
    limits = limits or VideoLimits()
    container = sniff_video(data)
    if container is None:
        raise NotAnImage("the content is not a video of a supported container (magic bytes)")
    try:
        return _Sampler(data, container, limits).run()
    except ImageError:
        raise
    except MemoryError:
        raise VideoTooManyPixels("the video needs more memory than available to decode") from None
    except Exception as exc:
        # Untrusted input reaches FFmpeg: any failure is this video's fault, not ours.
        raise DecodeFailed(f"{container} decode failed: {type(exc).__name__}") from None


class _Sampler:
    """One pass over one video: decode, count, sample, hash."""

    def __init__(self, data: bytes, container: str, limits: VideoLimits) -> None:
        self.data = data
        self.container = container
        self.limits = limits
        self.frames: list[VideoFrame] = []
        self.decoded = 0
        self.pixels = 0
        self.bad_packets = 0
        self.next_due = 0.0
        self.last_time = -1.0
        self.size: tuple[int, int] | None = None
        self.best: tuple[int, npt.NDArray[np.uint8], int] | None = None  # quality, luma, index
        self.last_kept: npt.NDArray[np.uint8] | None = None

    def run(self) -> VideoDigest:
        demuxer = DEMUXERS[self.container]
        with av.open(BytesIO(self.data), mode="r", format=demuxer, options=_OPEN_OPTIONS) as box:
            stream = self._stream(box)
            declared = _declared_duration(box, stream)
            if declared is not None and declared > self.limits.max_duration_seconds:
                raise VideoTooLong(
                    f"declared duration {declared:.1f} s exceeds "
                    f"{self.limits.max_duration_seconds:g} s"
                )
            self._decode(box, stream)
        if self.best is None or self.size is None:
            raise DecodeFailed(f"{self.container}: no frame could be decoded")
        _, luma, index = self.best
        frame = self.frames[index]
        image = _compute_hashes(self.data, Image.fromarray(luma), False, False)
        hashes = image.model_copy(update={"pdq": frame.pdq, "pdq_quality": frame.quality})
        duration = declared if declared is not None else max(self.last_time, 0.0)
        interval = self.limits.frame_interval_seconds
        video = VideoHashes(
            duration=max(duration, 0.0),
            frames_decoded=self.decoded,
            frame_interval=interval if interval > 0 else None,
            frames=self.frames,
        )
        width, height = self.size
        return VideoDigest(
            format=self.container,
            width=width,
            height=height,
            animated=self.decoded > 1,
            hashes=hashes,
            video=video,
        )

    def _stream(self, box: InputContainer) -> VideoStream:
        if not box.streams.video:
            raise DecodeFailed(f"{self.container} has no video stream")
        stream = box.streams.video[0]
        context = stream.codec_context
        self._check_size(context.width, context.height, "declared ")
        if context.name not in ALLOWED_CODECS:
            raise UnsupportedFormat(f"video codec {context.name!r} is not supported")
        context.thread_count = 1  # one decoder thread: bounded memory, the pool parallelises
        return stream

    def _check_size(self, width: int, height: int, what: str = "") -> None:
        cap = self.limits.max_frame_pixels
        if width * height > cap:
            raise FrameTooLarge(f"{what}frame {width}x{height} exceeds the cap of {cap} pixels")

    def _decode(self, box: InputContainer, stream: VideoStream) -> None:
        for packet in box.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                # A damaged packet costs its frames, many of them the video.
                self.bad_packets += 1
                if self.bad_packets > MAX_BAD_PACKETS:
                    raise DecodeFailed(
                        f"{self.container}: more than {MAX_BAD_PACKETS} corrupt packets"
                    ) from None
                continue
            for frame in decoded:
                if isinstance(frame, av.VideoFrame):
                    self._frame(frame, stream)

    def _frame(self, frame: av.VideoFrame, stream: VideoStream) -> None:
        limits = self.limits
        index = self.decoded
        self.decoded += 1
        if self.decoded > limits.max_frames:
            raise TooManyFrames(f"more than {limits.max_frames} frames decoded")
        width, height = frame.width, frame.height
        self._check_size(width, height)
        self.pixels += width * height
        if self.pixels > limits.max_total_pixels:
            raise VideoTooManyPixels(
                f"more than {limits.max_total_pixels} pixels decoded over all frames"
            )
        time = _frame_time(frame, stream, index, self.last_time)
        if time > limits.max_duration_seconds:
            raise VideoTooLong(f"a frame at {time:.1f} s is past {limits.max_duration_seconds:g} s")
        self.last_time = time
        if self.size is None:
            self.size = (width, height)
        interval = limits.frame_interval_seconds
        if interval > 0:
            if time + _EPSILON < self.next_due:
                return  # decoded (it may be a reference), not sampled
            self.next_due = (math.floor(time / interval + _EPSILON) + 1) * interval
        self._sample(frame, index, time)

    def _sample(self, frame: av.VideoFrame, index: int, time: float) -> None:
        luma = frame_luma(frame)
        bits, quality = pdq_from_luma(luma)  # type: ignore[arg-type]  # float luma, see luma.py
        prune = self.limits.prune_distance
        last = self.last_kept
        if prune is not None and last is not None and np.count_nonzero(bits != last) <= prune:
            return
        self.last_kept = bits
        if len(self.frames) >= MAX_VIDEO_FRAMES:
            raise TooManyFrames(f"more than {MAX_VIDEO_FRAMES} frames sampled")
        self.frames.append(
            VideoFrame(frame=index, timestamp=round(time, 6), pdq=pdq_hex(bits), quality=quality)
        )
        if self.best is None or quality > self.best[0]:
            self.best = (quality, to_uint8(luma), len(self.frames) - 1)


def _declared_duration(box: InputContainer, stream: VideoStream) -> float | None:
    """The container's (else the stream's) declared duration in seconds, if it declares one."""
    if box.duration is not None and box.duration > 0:
        return float(box.duration) / av.time_base
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    return None


def _frame_time(frame: av.VideoFrame, stream: VideoStream, index: int, previous: float) -> float:
    """Seconds from the stream's time base; frames without a timestamp follow the frame rate."""
    if frame.time is not None:
        # Relative to the stream's start, so that the first frame is at (about) 0 s.
        start = 0.0
        if stream.start_time is not None and stream.time_base is not None:
            start = float(stream.start_time * stream.time_base)
        return max(0.0, frame.time - start)
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        return index / float(rate)
    return max(previous, 0.0)
