"""Benign synthetic videos, generated from a seed with numpy and PyAV, entirely in memory.

Moving coloured shapes over a smooth gradient: abstract, never text or people. Each frame is
drawn from the seed and the frame's time only, so the same call gives the same pictures (the
encoded bytes may differ between FFmpeg builds). Tests, benchmarks and the demo world use them;
no file is written (the container is muxed into an ``io.BytesIO``).

The copies the demo world places of a listed video are made from its encoded bytes, as they
would be on the web: ``transcode`` (another codec or bitrate, a smaller size, the first seconds
only), ``remux`` (the same packets in another container) and ``still_png`` (one frame as a PNG).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from typing import Final

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from worker_function.video.sniff import sniff_video

# (container format, codec) pairs by our container names; pix_fmt yuv420p throughout.
CODECS: Final[dict[str, tuple[str, str]]] = {
    "mp4": ("mp4", "libx264"),
    "mov": ("mov", "libx264"),
    "webm": ("webm", "libvpx"),
    "mkv": ("matroska", "libx264"),
    "avi": ("avi", "mpeg4"),
}
SHAPES = 6
# Muxers otherwise write random ids (Matroska/WebM segment UIDs) and version strings: the same
# seed must give the same bytes, or a rebuilt demo world would not equal the first.
BITEXACT: Final[dict[str, str]] = {"fflags": "+bitexact"}
# What the synthetic web answers for each container (by our container names).
CONTENT_TYPES: Final[dict[str, str]] = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
}
# Containers a packet copy of an H.264 stream may go into (WebM takes VP8/VP9/AV1 only).
REMUX_TARGETS: Final = ("mkv", "mov", "mp4")


class VideoGenError(ValueError):
    """A copy that cannot be made as asked (no such container, nothing left after a trim)."""


def make_video(
    width: int = 320,
    height: int = 180,
    seconds: float = 3.0,
    fps: int = 30,
    container: str = "mp4",
    seed: int = 0,
    codec: str | None = None,
) -> bytes:
    """The encoded bytes of a ``seconds`` long video of moving shapes (even sides required).

    ``codec`` overrides the container's default codec (``CODECS``).
    """
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (yuv420p)")
    frames = max(1, round(seconds * fps))
    scene = _Scene(width, height, seed)
    pictures = (scene.draw(index / fps) for index in range(frames))
    return _encode(pictures, width, height, fps, container, codec)


def _encode(
    pictures: Iterable[npt.NDArray[np.uint8]],
    width: int,
    height: int,
    fps: int,
    container: str,
    codec: str | None = None,
    bit_rate: int | None = None,
) -> bytes:
    """RGB pictures (height, width, 3) at ``fps`` encoded into ``container``."""
    if container not in CODECS:
        raise VideoGenError(f"unknown container {container!r} (one of {sorted(CODECS)})")
    fmt, default_codec = CODECS[container]
    name = codec or default_codec
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt, options=BITEXACT) as output:
        stream = output.add_stream(name, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width = width
        stream.height = height
        # Motion JPEG takes the full-range ("JPEG") variant.
        stream.pix_fmt = "yuvj420p" if name == "mjpeg" else "yuv420p"
        stream.time_base = Fraction(1, fps)
        if name == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "23"}
        elif name in ("mpeg4", "mjpeg"):
            stream.bit_rate = width * height * fps // 4  # their defaults blur small frames
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for index, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def _decoded(data: bytes) -> tuple[list[tuple[float, av.VideoFrame]], int]:
    """Every frame of the first video stream with its time in seconds, and the frame rate
    (rounded to whole frames per second; our videos have one)."""
    with av.open(io.BytesIO(data), mode="r") as box:
        if not box.streams.video:
            raise VideoGenError("no video stream")
        stream = box.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        frames = [(float(f.time or 0.0), f) for f in box.decode(stream)]
    return frames, max(1, round(float(rate)))


def transcode(
    data: bytes,
    container: str = "mp4",
    *,
    codec: str | None = None,
    width: int | None = None,
    height: int | None = None,
    seconds: float | None = None,
    bit_rate: int | None = None,
) -> bytes:
    """A re-encoded copy of the video ``data``: into ``container`` with ``codec`` (default:
    the container's), scaled to ``width`` x ``height`` (even; default: the same size), keeping
    only the first ``seconds`` (default: all) and at ``bit_rate`` (default: the codec's)."""
    frames, fps = _decoded(data)
    if seconds is not None:
        frames = [(t, f) for t, f in frames if t < seconds - 1e-6]
    if not frames:
        raise VideoGenError("no frame left to encode")
    first = frames[0][1]
    w, h = width or first.width, height or first.height
    if w % 2 or h % 2:
        raise VideoGenError("width and height must be even (yuv420p)")
    pictures = (
        np.asarray(f.to_ndarray(width=w, height=h, format="rgb24"), dtype=np.uint8)
        for _, f in frames
    )
    return _encode(pictures, w, h, fps, container, codec, bit_rate)


def remux(data: bytes, container: str) -> bytes:
    """The same coded packets in another container (no re-encoding: every frame's pixels stay
    the same, the bytes do not)."""
    if container not in CODECS:
        raise VideoGenError(f"unknown container {container!r} (one of {sorted(CODECS)})")
    buffer = io.BytesIO()
    with (
        av.open(io.BytesIO(data), mode="r") as source,
        av.open(buffer, mode="w", format=CODECS[container][0], options=BITEXACT) as output,
    ):
        if not source.streams.video:
            raise VideoGenError("no video stream")
        inbound = source.streams.video[0]
        outbound = output.add_stream_from_template(inbound)
        for packet in source.demux(inbound):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = outbound
            output.mux(packet)
    return buffer.getvalue()


def still_png(data: bytes, at: float) -> bytes:
    """The frame shown at ``at`` seconds (the last one starting at or before it) as PNG."""
    frames, _ = _decoded(data)
    shown = [f for t, f in frames if t <= at + 1e-6] or [frames[0][1]]
    picture = np.asarray(shown[-1].to_ndarray(format="rgb24"), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def container_of(data: bytes) -> str | None:
    """Our container name of ``data`` by its magic bytes, or None if it is not a video."""
    return sniff_video(data)


class _Scene:
    """A gradient background and a few coloured rectangles on seeded paths."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
        low, high = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        tilt = rng.uniform(0.2, 0.8)
        mix = tilt * xs + (1 - tilt) * ys
        # A coarse checker of seeded tints over the gradient: edges keep PDQ quality high.
        tiles = rng.uniform(-60, 60, (9, 16, 1)).astype(np.float32)
        rows = np.arange(height) * 9 // height
        cols = np.arange(width) * 16 // width
        texture = tiles[rows][:, cols]
        gradient = low * (1 - mix) + high * mix + texture
        self.background = np.clip(gradient, 0, 255).astype(np.uint8)
        self.colours = rng.integers(0, 256, (SHAPES, 3), dtype=np.uint8)
        self.sizes = rng.uniform(0.15, 0.35, (SHAPES, 2))
        self.starts = rng.uniform(0.0, 1.0, (SHAPES, 2))
        self.speeds = rng.uniform(-0.25, 0.25, (SHAPES, 2))  # fractions of the frame per second

    def draw(self, time: float) -> npt.NDArray[np.uint8]:
        picture: npt.NDArray[np.uint8] = self.background.copy()
        for colour, size, start, speed in zip(
            self.colours, self.sizes, self.starts, self.speeds, strict=True
        ):
            # Positions bounce inside the frame (a triangle wave of the time).
            position = np.abs(((start + speed * time) % 2.0) - 1.0)
            w, h = int(size[0] * self.width), int(size[1] * self.height)
            left = int(position[0] * (self.width - w))
            top = int(position[1] * (self.height - h))
            picture[top : top + h, left : left + w] = colour
        return picture
