"""PDQ in numpy, for the 8-bit luminance of an image of at most 512 px a side.

The same algorithm as Meta's C++ reference (pdqhashing.cpp): two passes of Jarosz box filters
along each axis, decimation to 64 x 64, a 16 x 16 DCT (without the DC row), and a median
threshold. Box filters and decimation are linear, so for one image size they are one 64 x N
matrix per axis, cached: the whole hash is two small matrix products. Kept in agreement with
``pdqhash`` (the C++ code) by tests/function/test_pdq_numpy.py, and with Meta's vectors by
tests/function/test_pdq_vectors.py.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

_OUT = 64
# dct[i][j] = sqrt(2/64) * cos(pi / 128 * (i + 1) * (2j + 1)): rows 1..16 of a 64-point DCT-II.
_DCT = np.array(
    [
        [
            math.sqrt(2 / _OUT) * math.cos(math.pi / 2 / _OUT * (i + 1) * (2 * j + 1))
            for j in range(64)
        ]
        for i in range(16)
    ],
    dtype=np.float64,
)


def _window(size: int) -> int:
    return (size + 2 * _OUT - 1) // (2 * _OUT)


@lru_cache(maxsize=256)
def _filter_matrix(size: int) -> npt.NDArray[np.float32]:
    """64 x size: two box-filter passes (reference edge rules) then decimation, for one axis."""
    window = _window(size)
    half = (window + 2) // 2
    box = np.zeros((size, size), dtype=np.float64)
    for out in range(size):
        lo = max(0, out - (window - half))
        hi = min(size - 1, out + half - 1)
        box[out, lo : hi + 1] = 1.0 / (hi - lo + 1)
    twice = box @ box
    rows = [int(((i + 0.5) * size) / _OUT) for i in range(_OUT)]
    return np.ascontiguousarray(twice[rows], dtype=np.float32)


def _bicubic(x: float) -> float:
    # Pillow's bicubic kernel (a = -0.5), Resample.c.
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


@lru_cache(maxsize=256)
def _resize_matrix(size: int, target: int) -> npt.NDArray[np.float64]:
    """target x size: Pillow's bicubic resampling weights along one axis (precompute_coeffs)."""
    scale = size / target
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    matrix = np.zeros((target, size), dtype=np.float64)
    for out in range(target):
        center = (out + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), size)
        weights = [_bicubic((x - center + 0.5) / filterscale) for x in range(lo, hi)]
        total = sum(weights)
        if total != 0.0:
            matrix[out, lo:hi] = [w / total for w in weights]
    return matrix


@lru_cache(maxsize=256)
def _combined_matrix(size: int, target: int) -> npt.NDArray[np.float32]:
    """64 x size: bicubic resize to ``target``, then PDQ's filters and decimation, in one."""
    combined = _filter_matrix(target).astype(np.float64) @ _resize_matrix(size, target)
    return np.ascontiguousarray(combined, dtype=np.float32)


def pdq_from_luma(
    luma: npt.NDArray[np.uint8], resize_to: tuple[int, int] | None = None
) -> tuple[npt.NDArray[np.uint8], int]:
    """(256 hash bits in pdqhash's vector order, quality 0-100) of a 2-D uint8 luminance array.

    ``resize_to`` = (width, height): hash as if the image had first been resized there with
    Pillow's bicubic filter (the 512 px thumbnail), without making the thumbnail. Only the
    thumbnail's intermediate rounding to 8 bits is skipped.
    """
    values, buffer = pdq_coefficients(luma, resize_to)
    return bits_of(values), _quality(buffer)


def pdq_dihedral_from_luma(
    luma: npt.NDArray[np.uint8], resize_to: tuple[int, int] | None = None
) -> tuple[list[npt.NDArray[np.uint8]], int]:
    """The 8 dihedral hashes (pdqhash's order, the original first) and the quality, from one
    filter pass and one DCT (see ``dihedral_coefficients``)."""
    values, buffer = pdq_coefficients(luma, resize_to)
    return [bits_of(v) for v in dihedral_coefficients(values)], _quality(buffer)


def bits_of(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """The 256 bits of 256 DCT coefficients: above the median or not."""
    median = np.partition(values, 127)[127]  # the reference's Torben median: the lower one
    # pdqhash's vector lists the bits last coefficient first (see pdq_hex for the hex order).
    bits: npt.NDArray[np.uint8] = (values > median).astype(np.uint8)[::-1]
    return bits


# Row k of the DCT over a reversed axis is (-1)^(k+1) times row k (our rows are k = 1..16).
_REVERSED_SIGN = np.array([(-1.0) ** (k + 1) for k in range(16)], dtype=np.float64)
# (transpose, reverse rows, reverse columns) per dihedral variant, in pdqhash's order:
# original, rot90, rot180, rot270, flip x, flip y, flip +1 (transpose), flip -1 (anti-transpose).
_DIHEDRAL = (
    (False, False, False),
    (True, False, True),
    (False, True, True),
    (True, True, False),
    (False, True, False),
    (False, False, True),
    (True, False, False),
    (True, True, True),
)


def dihedral_coefficients(values: npt.NDArray[np.float64]) -> list[npt.NDArray[np.float64]]:
    """The coefficients of the 8 rotated/flipped images, derived from the original's.

    Flipping an axis only changes the sign of that axis's odd DCT rows, and transposing the
    image transposes the coefficients, so no second DCT is needed (Meta's C++ reference does
    the same). Box filters and decimation are near-symmetric: the result agrees with pdqhash's
    ``compute_dihedral`` bit for bit (tests/function/test_robust_hashing.py).
    """
    square = values.reshape(16, 16)
    out = []
    for transpose, rows, cols in _DIHEDRAL:
        m = square
        if cols:
            m = m * _REVERSED_SIGN[None, :]
        if rows:
            m = m * _REVERSED_SIGN[:, None]
        out.append((m.T if transpose else m).ravel())
    return out


def pdq_coefficients(
    luma: npt.NDArray[np.uint8], resize_to: tuple[int, int] | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(the 256 DCT coefficients the bits threshold, the 64 x 64 filtered buffer)."""
    height, width = luma.shape
    pixels = luma.astype(np.float32)
    if resize_to is None or resize_to == (width, height):
        rows, cols = _filter_matrix(height), _filter_matrix(width)
    else:
        rows, cols = _combined_matrix(height, resize_to[1]), _combined_matrix(width, resize_to[0])
    buffer = (rows @ pixels @ cols.T).astype(np.float64)
    dct = _DCT @ buffer @ _DCT.T  # 16 x 16
    return dct.ravel(), buffer


def _quality(buffer: npt.NDArray[np.float64]) -> int:
    # Sum of truncated absolute neighbour differences, scaled as in the reference. The same
    # operations in the same order, in place (one buffer per axis instead of four); the sums
    # are of whole numbers, exact in any order.
    return min(
        100,
        int(
            _truncated_sum(buffer[:-1, :], buffer[1:, :])
            + _truncated_sum(buffer[:, :-1], buffer[:, 1:])
        )
        // 90,
    )


def _truncated_sum(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """sum(trunc(abs((a - b) * 100 / 255)))."""
    diff = np.subtract(a, b)
    diff *= 100
    diff /= 255
    np.abs(diff, out=diff)
    np.trunc(diff, out=diff)
    return float(diff.sum())


def pdq_hex(vector: npt.ArrayLike) -> str:
    """Meta's hex convention: bit 0 of pdqhash's vector is the most significant bit."""
    bits = np.asarray(vector).astype(bool)
    if bits.shape != (256,):
        raise ValueError(f"a PDQ vector has 256 bits, got shape {bits.shape}")
    return np.packbits(bits).tobytes().hex()
