"""Issue 17 shortcuts in the hashing pipeline give exactly the hashes of the long way: dHash's
hex without imagehash's bit string, PDQ without the dihedral variants when they are not asked
for, and (second round) medians, PDQ quality, border peeling and luminance without numpy's
generic machinery or an RGB copy."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps

from tests.function import helpers as h
from worker_function.hashing import _to_luma, _to_rgb, hash_image
from worker_function.pdq import _quality
from worker_function.phash import _median, dhash_hex
from worker_function.trim import DEFAULT_RULE, BorderRule, Box, _lower_median, border_box


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


# --- issue 17, second round: numpy shortcuts equal to what they replace, value for value.


@settings(max_examples=300, deadline=None)
@given(arrays(np.uint8, st.integers(1, 600), elements=st.integers(0, 255)))
def test_trim_median_is_numpys_truncated(line: np.ndarray) -> None:
    assert _lower_median(line) == int(np.median(line))


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        np.float64,
        st.sampled_from([(8, 8), (4, 4), (2, 6)]),
        elements=st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, 1.5, -3.25]),
    )
)
def test_phash_median_is_numpys(values: np.ndarray) -> None:
    assert _median(values) == float(np.median(values))


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, (64, 64), elements=st.floats(0, 255, allow_nan=False)))
def test_pdq_quality_is_the_reference_formula(buffer: np.ndarray) -> None:
    vertical = np.trunc(np.abs((buffer[:-1, :] - buffer[1:, :]) * 100 / 255)).sum()
    horizontal = np.trunc(np.abs((buffer[:, :-1] - buffer[:, 1:]) * 100 / 255)).sum()
    assert _quality(buffer) == min(100, int(vertical + horizontal) // 90)


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.uint8, st.tuples(st.integers(8, 60), st.integers(8, 60)), elements=st.integers(0, 255)
    ),
    st.integers(0, 255),
    st.tuples(*(st.integers(0, 12) for _ in range(4))),
    st.booleans(),
)
def test_border_box_counts_as_the_mean_did(
    pixels: np.ndarray, colour: int, bars: tuple[int, int, int, int], noisy: bool
) -> None:
    # The peeled lines' share within tolerance, counted (trim.py) against the mean of the
    # booleans (the code it replaced), on framed images with exact and noisy borders.
    top, bottom, left, right = bars
    framed = pixels.copy()
    framed[:top], framed[framed.shape[0] - bottom :] = colour, colour
    framed[:, :left], framed[:, framed.shape[1] - right :] = colour, colour
    if noisy:
        framed = np.clip(framed.astype(np.int16) + (pixels % 41) - 20, 0, 255).astype(np.uint8)
    assert border_box(framed) == _border_box_by_mean(framed)


def _border_box_by_mean(luma: np.ndarray, rule: BorderRule = DEFAULT_RULE) -> Box | None:
    """border_box as it was before issue 17's second round (np.median, mean of booleans)."""

    def share(lines: np.ndarray, colour: int) -> np.ndarray:
        shares: np.ndarray = (np.abs(lines.astype(np.int16) - colour) <= rule.tolerance).mean(
            axis=1
        )
        return shares

    def peel(lines: np.ndarray) -> int:
        colour = int(np.median(lines[0]))
        if share(lines[:1], colour)[0] < rule.min_share:
            return 0
        within = share(lines[: int((1.0 - rule.min_keep) * lines.shape[0]) + 1], colour)
        failing = np.flatnonzero(within < rule.min_share)
        return int(failing[0]) if failing.size else within.shape[0]

    height, width = luma.shape
    top = peel(luma)
    bottom = height - peel(luma[::-1])
    if bottom - top < rule.min_keep * height:
        return None
    columns = luma[top:bottom].T
    left = peel(columns)
    right = width - peel(columns[::-1])
    if right - left < rule.min_keep * width:
        return None
    cuts = (top / height, (height - bottom) / height, left / width, (width - right) / width)
    if max(cuts) < rule.min_cut:
        return None
    return Box(top, bottom, left, right)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "I;16", "1", "CMYK"])
@pytest.mark.parametrize("transparency", [False, True])
def test_luminance_shortcut_equals_the_rgb_route(mode: str, transparency: bool) -> None:
    base = h.generated_image(3, (40, 30)).convert("RGB")
    image = base.convert(mode) if mode != "I;16" else _sixteen_bit(base)
    if transparency and mode in ("RGB", "L", "P"):
        image.info["transparency"] = (10, 20, 30) if mode == "RGB" else 17
    shortcut = np.asarray(_to_luma(image))
    assert np.array_equal(shortcut, np.asarray(_to_rgb(image).convert("L")))


def _sixteen_bit(image: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
