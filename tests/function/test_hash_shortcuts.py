"""Issue 17 shortcuts in the hashing pipeline give exactly the hashes of the long way: dHash's
hex without imagehash's bit string, and PDQ without the dihedral variants when they are not
asked for."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps

from tests.function import helpers as h
from worker_function.hashing import hash_image
from worker_function.phash import dhash_hex


def test_dhash_equal_on_generated_photos() -> None:
    for seed in range(40):
        image = h.generated_image(seed, (96 + seed * 7, 64 + seed * 3))
        assert dhash_hex(image) == str(imagehash.dhash(image))


@settings(max_examples=150, deadline=None)
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 70), st.integers(1, 70)),
        elements=st.sampled_from([0, 1, 127, 128, 254, 255]) | st.integers(0, 255),
    )
)
def test_dhash_equal_on_any_pixels(pixels: np.ndarray) -> None:
    image = Image.fromarray(pixels)
    assert dhash_hex(image) == str(imagehash.dhash(image))


def _framed(seed: int) -> bytes:
    """A generated photo inside a uniform border: it has a trimmed PDQ too."""
    inner = h.generated_image(seed, (200 + 13 * seed, 150 + 7 * seed))
    return h.encode(ImageOps.expand(inner, border=40, fill=(255, 255, 255)), "PNG")


@pytest.mark.parametrize(
    "data",
    [h.encode(h.generated_image(seed, (640 + seed, 480)), "JPEG") for seed in range(3)]
    + [h.encode(h.generated_image(4, (64, 48)), "PNG")]
    + [_framed(seed) for seed in range(3)],
)
def test_pdq_without_dihedral_is_the_first_dihedral_variant(data: bytes) -> None:
    plain = hash_image(data).hashes
    full = hash_image(data, dihedral=True).hashes
    assert plain.pdq_dihedral is None
    assert full.pdq_dihedral is not None and plain.pdq == full.pdq == full.pdq_dihedral[0]
    assert plain.pdq_quality == full.pdq_quality
    assert (plain.phash, plain.dhash) == (full.phash, full.dhash)
    assert plain.pdq_trimmed_quality == full.pdq_trimmed_quality
    if full.pdq_trimmed is None:
        assert plain.pdq_trimmed is None
    else:
        assert plain.pdq_trimmed == full.pdq_trimmed[:1] and len(full.pdq_trimmed) == 8
