"""A decoded video frame -> its ITU-R 601 luminance, as PDQ wants it, without colour conversion.

Meta's vPDQ reference converts each frame to RGB and back to luminance (0.299 R + 0.587 G +
0.114 B). For YUV frames that luminance is the Y plane itself, stretched from the limited range
(16..235) to 0..255: an affine map, taken here in float so nothing is rounded twice. It saves the
RGB conversion, the costliest step after decoding, and agrees with the reference hashes at least
as well (docs: the vPDQ conformance distribution). Other pixel formats go through RGB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import av

# 8-bit planar or semi-planar YUV: plane 0 is Y, one byte per pixel.
_Y_PLANE_FORMATS = frozenset(
    {
        "yuv420p",
        "yuv422p",
        "yuv444p",
        "yuv410p",
        "yuv411p",
        "yuv440p",
        "nv12",
        "nv21",
        "nv16",
        "nv24",
    }
)
# The JPEG ("full range") variants: Y already spans 0..255.
_FULL_RANGE_FORMATS = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"})
_AVCOL_RANGE_JPEG = 2  # AVColorRange: full range signalled in the stream
_LIMITED_SCALE = np.float32(255.0 / 219.0)
_RGB_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def frame_luma(frame: av.VideoFrame) -> npt.NDArray[np.float32]:
    """The frame's luminance, height x width, float32 on the 0..255 scale."""
    name = frame.format.name
    full = name in _FULL_RANGE_FORMATS
    if name in _Y_PLANE_FORMATS or full:
        plane = frame.planes[0]
        stride = plane.line_size
        # Rows are padded to the stride (test-padded-dimensions.mp4): take the visible part.
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8, count=stride * frame.height)
        y: npt.NDArray[np.float32] = rows.reshape(frame.height, stride)[:, : frame.width].astype(
            np.float32
        )
        if full or frame.color_range == _AVCOL_RANGE_JPEG:
            return y
        stretched: npt.NDArray[np.float32] = (y - np.float32(16.0)) * _LIMITED_SCALE
        return stretched
    rgb = frame.to_ndarray(format="rgb24").astype(np.float32)
    luma: npt.NDArray[np.float32] = rgb @ _RGB_WEIGHTS
    return luma


def to_uint8(luma: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Rounded and clipped to bytes (the image hashes of the best frame start from this)."""
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)
