"""Issue 18 in the function: 8 dihedral PDQ hashes from one DCT, PDQ of the image inside its
uniform borders, and PDQ of centred regions for list building."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pdqhash
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from PIL import Image

from protocol.hashes import hamming
from worker_function.hashing import hash_image, pdq_hex
from worker_function.pdq import pdq_dihedral_from_luma
from worker_function.trim import DEFAULT_RULE, Box, border_box

from .helpers import encode, generated_image

MATCH = 31


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    width=st.integers(64, 512),
    height=st.integers(64, 512),
)
def test_dihedral_from_one_dct_equals_pdqhash(seed: int, width: int, height: int) -> None:
    """Sign and transposition changes of one DCT give exactly pdqhash's 8 transformed hashes
    (which runs the C++ reference's dihedral code); only coefficients tied at the median may
    differ, and a generated image has none."""
    luma = np.asarray(generated_image(seed, (width, height)).convert("L"), dtype=np.uint8)
    ours, quality = pdq_dihedral_from_luma(luma)
    rgb = np.ascontiguousarray(np.repeat(luma[:, :, None], 3, axis=2))
    theirs, qualities = pdqhash.compute_dihedral(rgb)
    assert [pdq_hex(v) for v in ours] == [pdq_hex(v) for v in theirs]
    assert quality == int(qualities)


def test_dihedral_variants_find_mirrored_and_rotated_copies() -> None:
    original = generated_image(21, (400, 300))
    listed = hash_image(encode(original, "PNG")).hashes.pdq
    for method in Image.Transpose:
        copy = hash_image(encode(original.transpose(method), "JPEG"), dihedral=True).hashes
        assert copy.pdq_dihedral is not None and copy.pdq_dihedral[0] == copy.pdq
        assert min(hamming(v, listed) for v in copy.pdq_dihedral) <= MATCH, method
        if method is not Image.Transpose.ROTATE_180:
            assert hamming(copy.pdq, listed) > MATCH  # PDQ alone would miss it


def _framed(image: Image.Image, sides: tuple[int, int, int, int], colour: int) -> Image.Image:
    left, top, right, bottom = sides
    canvas = Image.new("RGB", (image.width + left + right, image.height + top + bottom))
    canvas.paste((colour, colour, colour), (0, 0, canvas.width, canvas.height))
    canvas.paste(image, (left, top))
    return canvas


def test_bordered_and_letterboxed_copies_hash_like_the_original_when_trimmed() -> None:
    original = generated_image(22, (400, 300))
    listed = hash_image(encode(original, "PNG")).hashes.pdq
    for sides, colour in (((40, 30, 40, 30), 255), ((0, 60, 0, 60), 0), ((25, 0, 70, 10), 128)):
        copy = hash_image(encode(_framed(original, sides, colour), "JPEG")).hashes
        assert hamming(copy.pdq, listed) > MATCH, sides
        assert copy.pdq_trimmed is not None and len(copy.pdq_trimmed) == 1
        assert copy.pdq_trimmed_quality is not None and copy.pdq_trimmed_quality >= 50
        assert hamming(copy.pdq_trimmed[0], listed) <= MATCH, sides
    # With dihedral asked for, the trimmed image's 8 variants come too (a framed mirror).
    mirrored = _framed(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (30, 30, 30, 30), 0)
    both = hash_image(encode(mirrored, "PNG"), dihedral=True).hashes
    assert both.pdq_trimmed is not None and len(both.pdq_trimmed) == 8
    assert min(hamming(v, listed) for v in both.pdq_trimmed) <= MATCH


def test_images_without_a_border_have_no_trimmed_hash() -> None:
    hashes = hash_image(encode(generated_image(23, (300, 300)), "JPEG")).hashes
    assert hashes.pdq_trimmed is None and hashes.pdq_trimmed_quality is None
    flat = hash_image(encode(Image.new("RGB", (200, 200), (90, 90, 90)), "PNG")).hashes
    assert flat.pdq_trimmed is None


def test_region_hashes_find_centred_crops() -> None:
    original = generated_image(24, (480, 360))
    regions = hash_image(encode(original, "PNG"), regions=True).hashes.pdq_regions
    assert regions is not None and len(regions) == 10
    assert hash_image(encode(original, "PNG")).hashes.pdq_regions is None  # only on request
    for share in (0.05, 0.10, 0.15, 0.20):
        dx, dy = round(original.width * share), round(original.height * share)
        crop = original.crop((dx, dy, original.width - dx, original.height - dy))
        pdq = hash_image(encode(crop, "JPEG")).hashes.pdq
        assert min(hamming(pdq, r) for r in regions) <= MATCH, share


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sides=st.tuples(*(st.integers(0, 40) for _ in range(4))),
    colour=st.integers(0, 255),
    size=st.tuples(st.integers(40, 200), st.integers(40, 200)),
)
def test_border_box_recovers_a_uniform_border_exactly(
    seed: int, sides: tuple[int, int, int, int], colour: int, size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(seed)
    width, height = size
    inner = rng.integers(0, 256, size=(height, width), dtype=np.uint8)  # noise: never border
    left, top, right, bottom = sides
    framed = np.full((height + top + bottom, width + left + right), colour, dtype=np.uint8)
    framed[top : top + height, left : left + width] = inner
    box = border_box(framed)
    full_h, full_w = framed.shape
    cuts = (top / full_h, bottom / full_h, left / full_w, right / full_w)
    if max(cuts) < DEFAULT_RULE.min_cut:
        assert box is None
    else:
        assert box == Box(top, top + height, left, left + width)


@settings(max_examples=300, deadline=None)
@given(
    pixels=arrays(
        np.uint8,
        array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=96),
        elements=st.integers(0, 255),
        fill=st.integers(0, 255),  # mostly one value: flat images and partial borders
    )
)
def test_border_box_on_any_pixels_keeps_a_large_inner_part(pixels: np.ndarray) -> None:
    box = border_box(pixels)
    if box is None:
        return
    height, width = pixels.shape
    assert 0 <= box.top < box.bottom <= height and 0 <= box.left < box.right <= width
    assert box.bottom - box.top >= DEFAULT_RULE.min_keep * height
    assert box.right - box.left >= DEFAULT_RULE.min_keep * width


def test_libra_hash_regions_output_imports_as_a_list(tmp_path: Path) -> None:
    """`libra hash --regions` prints what the node's libra-hash list format reads."""
    from node.lists import ImportedRecord, get_importer

    from .test_cli_settings import run_hash

    path = tmp_path / "reference.png"
    path.write_bytes(encode(generated_image(25, (360, 300)), "PNG"))
    code, lines = run_hash(["--regions", str(path)])
    assert code == 0
    body = "".join(json.dumps(line) + "\n" for line in lines)
    (record,) = get_importer("libra-hash").records(io.StringIO(body))
    assert isinstance(record, ImportedRecord) and len(record.regions) == 10
    code, lines = run_hash([str(path)])
    hashes = lines[0]["hashes"]
    assert isinstance(hashes, dict) and "pdq_regions" not in hashes  # only when asked
