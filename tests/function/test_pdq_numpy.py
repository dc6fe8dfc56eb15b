"""The numpy PDQ (worker_function/pdq.py) is bit-identical to pdqhash (Meta's C++ code)."""

from __future__ import annotations

import numpy as np
import pdqhash
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.function import helpers as h
from worker_function.hashing import pdq_hex
from worker_function.pdq import pdq_coefficients, pdq_from_luma


def _reference(luma: np.ndarray) -> tuple[str, int]:
    rgb = np.ascontiguousarray(np.repeat(luma[:, :, None], 3, axis=2))
    vector, quality = pdqhash.compute(rgb)
    return pdq_hex(vector), int(quality)


def _ours(luma: np.ndarray) -> tuple[str, int]:
    bits, quality = pdq_from_luma(luma)
    return pdq_hex(bits), quality


def test_generated_photos_agree_exactly() -> None:
    for seed, size in [(1, (512, 341)), (2, (341, 512)), (3, (512, 512)), (4, (97, 300))]:
        luma = np.asarray(h.generated_image(seed, size).convert("L"))
        assert _ours(luma) == _reference(luma)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.uint8,
        st.tuples(st.integers(16, 200), st.integers(16, 200)),
        elements=st.integers(0, 255),
    )
)
def test_any_luminance_agrees_with_pdqhash(luma: np.ndarray) -> None:
    ours, quality = _ours(luma)
    reference, reference_quality = _reference(luma)
    assert quality == reference_quality
    if quality < 50:
        return  # near-flat input: the bits are rounding noise in both, and matchers drop them
    # Bits may differ only where a coefficient ties with the median: there float rounding
    # (float32 here, the reference's own order of operations) decides the side. Sparse inputs
    # (a few bright pixels on black) have many exact ties, so this is not a bit count.
    differing = int(ours, 16) ^ int(reference, 16)
    values, _ = pdq_coefficients(luma)
    median = np.partition(values, 127)[127]
    scale = float(np.abs(values).max())
    for k in range(256):  # hex bit k (most significant first) is coefficient 255 - k
        if differing >> (255 - k) & 1:
            assert abs(values[255 - k] - median) <= 1e-9 * scale, f"bit {k} is not a tie"


def test_smooth_images_agree_with_pdqhash() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        h_, w_ = (int(x) for x in rng.integers(32, 512, 2))
        y, x = np.mgrid[0:h_, 0:w_]
        luma = 127 + 120 * np.sin(x / rng.uniform(5, 60)) * np.cos(y / rng.uniform(5, 60))
        luma = luma.astype(np.uint8)
        assert _ours(luma) == _reference(luma)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 1600), st.integers(1, 1600))
def test_thumbnail_size_is_pillows(width: int, height: int) -> None:
    from PIL import Image

    from worker_function.hashing import thumbnail_size

    img = Image.new("L", (width, height))
    img.thumbnail((512, 512))
    assert thumbnail_size((width, height), (512, 512)) == img.size


def test_folded_thumbnail_hashes_like_the_real_thumbnail() -> None:
    from worker_function.hashing import hash_image

    # dihedral=True materialises the thumbnail; without it the resize is folded into PDQ.
    for seed, size in [(1, (624, 416)), (2, (1096, 730)), (3, (730, 1000)), (4, (530, 515))]:
        data = h.encode(h.generated_image(seed, size), "JPEG", quality=90)
        folded = hash_image(data).hashes
        real = hash_image(data, dihedral=True).hashes
        assert folded.pdq_quality == real.pdq_quality
        assert bin(int(folded.pdq, 16) ^ int(real.pdq, 16)).count("1") <= 2
