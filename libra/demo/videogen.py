"""Benign synthetic videos, generated from a seed with numpy and PyAV, entirely in memory.

Moving coloured shapes over a smooth gradient: abstract, never text or people. Each frame is
drawn from the seed and the frame's time only, so the same call gives the same pictures (the
encoded bytes may differ between FFmpeg builds). Tests, benchmarks and the demo world use them;
no file is written (the container is muxed into an ``io.BytesIO``).
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Final

import av
import numpy as np
import numpy.typing as npt

# (container format, codec) pairs by our container names; pix_fmt yuv420p throughout.
CODECS: Final[dict[str, tuple[str, str]]] = {
    "mp4": ("mp4", "libx264"),
    "mov": ("mov", "libx264"),
    "webm": ("webm", "libvpx"),
    "mkv": ("matroska", "libx264"),
    "avi": ("avi", "mpeg4"),
}
SHAPES = 6


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
    fmt, default_codec = CODECS[container]
    frames = max(1, round(seconds * fps))
    scene = _Scene(width, height, seed)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as output:
        stream = output.add_stream(codec or default_codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width = width
        stream.height = height
        # Motion JPEG takes the full-range ("JPEG") variant.
        stream.pix_fmt = "yuvj420p" if (codec or default_codec) == "mjpeg" else "yuv420p"
        stream.time_base = Fraction(1, fps)
        if (codec or default_codec) == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "23"}
        elif (codec or default_codec) in ("mpeg4", "mjpeg"):
            stream.bit_rate = width * height * fps // 4  # their defaults blur small frames
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(scene.draw(index / fps), format="rgb24")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


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
