"""pHash and dHash equal to ``imagehash``'s, without importing scipy unless a bit is in doubt.

``imagehash.phash`` imports ``scipy.fftpack`` for two 32-point DCTs, and scipy's import pulls in
scipy.special, numpy.f2py and more: 170 ms, a third of `libra hash`'s start-up and of every
decode worker's (issue 17). Only the 8 x 8 lowest frequencies are used, so the DCT here is two
small matrix products (the same DCT-II as scipy's ``dct(type=2, norm=None)``).

Bit-equality with imagehash: both compute the same coefficients up to rounding (far below
``_DOUBT``). A bit is ``coefficient > median``, so rounding can only decide it when a
coefficient lies within rounding of the median (ties: flat or symmetric images). Such a hash is
recomputed with imagehash's own code, so every hash is exactly imagehash's
(tests/function/test_phash.py compares them, including the tie cases).
"""

from __future__ import annotations

from functools import cache

import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image

HASH_SIZE = 8
SIDE = HASH_SIZE * 4  # imagehash's highfreq_factor 4: the DCT of a 32 x 32 reduction
# Relative distance to the median below which a bit is left to imagehash (rounding of the
# products is ~1e-13 relative; real gaps near the median are many orders larger).
_DOUBT = 1e-7


@cache
def _dct_rows() -> npt.NDArray[np.float64]:
    """The first HASH_SIZE rows of the unnormalised DCT-II matrix: 2 cos(pi k (2n + 1) / 2N)."""
    k = np.arange(HASH_SIZE, dtype=np.float64)[:, None]
    n = np.arange(SIDE, dtype=np.float64)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * SIDE))


def phash_hex(image: Image.Image) -> str:
    """``str(imagehash.phash(image))``, bit for bit."""
    small = _luma(image).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    rows = _dct_rows()
    low = rows @ pixels @ rows.T
    median = _median(low)
    deviation = np.abs(low - median)
    doubt = _DOUBT * max(1.0, float(np.abs(low).max()))
    if float(deviation.min()) <= doubt:
        return str(imagehash.phash(image))  # a tie: rounding decides, so decide as imagehash does
    return _hex(low > median)


def dhash_hex(image: Image.Image) -> str:
    """``str(imagehash.dhash(image))``, bit for bit: the same resize and comparison."""
    small = _luma(image).resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small)
    return _hex(pixels[:, 1:] > pixels[:, :-1])


def _luma(image: Image.Image) -> Image.Image:
    # convert("L") of an "L" image is a copy of it: the resize reads the original instead.
    return image if image.mode == "L" else image.convert("L")


def _median(values: npt.NDArray[np.float64]) -> float:
    """``np.median`` of an even number of values (the mean of the two middle ones, computed
    the same way: their sum halved), without its generic machinery: a tenth of a small
    image's pHash (issue 17)."""
    flat = values.ravel()
    middle = flat.shape[0] // 2
    low, high = np.partition(flat, (middle - 1, middle))[middle - 1 : middle + 1]
    return float((low + high) / 2)


def _hex(bits: npt.NDArray[np.bool_]) -> str:
    """imagehash's hex of 64 bits (row-major, first bit most significant), without its string
    of '0'/'1' characters: a tenth of a small image's pHash and dHash (issue 17)."""
    return np.packbits(bits.ravel()).tobytes().hex()
