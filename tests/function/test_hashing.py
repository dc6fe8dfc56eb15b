"""hash_image: correctness, robustness to re-encoding, decode rules, limits and sniffing."""

from __future__ import annotations

import hashlib
import io
import itertools
import struct

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageOps

from protocol.hashes import FAMILIES, HashFamily, hamming, normalize
from tests.function import helpers as h
from worker_function.errors import (
    DecodeFailed,
    ImageError,
    NotAnImage,
    PixelLimit,
    UnsupportedFormat,
)
from worker_function.hashing import DecodeLimits, hash_image, pdq_hex

PDQ_MATCH = FAMILIES[HashFamily.PDQ].default_max_distance  # 31


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return h.generated_image(11, (480, 360))


def pdq_of(data: bytes) -> str:
    return hash_image(data).hashes.pdq


# --------------------------------------------------------------------------- correctness


def test_cryptographic_hashes_cover_the_raw_bytes(original: Image.Image) -> None:
    data = h.encode(original, "PNG")
    hashes = hash_image(data).hashes
    assert hashes.md5 == hashlib.md5(data).hexdigest()
    assert hashes.sha1 == hashlib.sha1(data).hexdigest()
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()


def test_every_hash_is_well_formed(original: Image.Image) -> None:
    hashes = hash_image(h.encode(original, "JPEG"), dihedral=True).hashes
    for family in HashFamily:
        value = getattr(hashes, family.value)
        assert normalize(family, value) == value  # right length, lowercase hex
    assert hashes.pdq_quality >= 80
    assert hashes.pdq_dihedral is not None and len(hashes.pdq_dihedral) == 8
    assert hash_image(h.encode(original, "JPEG")).hashes.pdq_dihedral is None


def test_deterministic(original: Image.Image) -> None:
    data = h.encode(original, "WEBP", quality=80)
    assert hash_image(data) == hash_image(data)


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {"quality": 95}),
        ("JPEG", {"quality": 50}),
        ("PNG", {}),
        ("WEBP", {"quality": 70}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("GIF", {}),
    ],
)
def test_reencoded_copies_stay_within_match_distance(
    original: Image.Image, fmt: str, options: dict[str, object]
) -> None:
    reference = pdq_of(h.encode(original, "PNG"))
    digest = hash_image(h.encode(original, fmt, **options))
    assert digest.format == fmt
    assert (digest.width, digest.height) == original.size
    assert hamming(digest.hashes.pdq, reference) <= PDQ_MATCH


@pytest.mark.parametrize("scale", [0.25, 0.5, 1.5, 3.0])
def test_resized_copies_stay_within_match_distance(original: Image.Image, scale: float) -> None:
    reference = hash_image(h.encode(original, "PNG")).hashes
    size = (round(original.width * scale), round(original.height * scale))
    resized = hash_image(h.encode(original.resize(size, Image.Resampling.LANCZOS), "JPEG"))
    assert (resized.width, resized.height) == size
    assert hamming(resized.hashes.pdq, reference.pdq) <= PDQ_MATCH
    assert hamming(resized.hashes.phash, reference.phash) <= 8


def test_different_images_are_far_apart() -> None:
    hashes = [hash_image(h.encode(h.generated_image(seed), "PNG")).hashes for seed in range(8)]
    for a, b in itertools.combinations(hashes, 2):
        assert hamming(a.pdq, b.pdq) > 64
        assert a.sha256 != b.sha256


def test_large_jpeg_draft_keeps_size_and_hash() -> None:
    big = h.generated_image(21, (2600, 2200))
    data = h.encode(big, "JPEG", quality=92)
    digest = hash_image(data)
    assert (digest.width, digest.height) == (2600, 2200)
    # Reference path without the libjpeg draft: full decode, then the same 512 thumbnail.
    full = Image.open(io.BytesIO(data)).convert("RGB")
    full.thumbnail((512, 512))
    vector, _ = pdqhash.compute(np.asarray(full))
    assert hamming(digest.hashes.pdq, pdq_hex(vector)) <= 10


# --------------------------------------------------------------------------- decode rules


def _jpeg_with_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return h.encode(img, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(original: Image.Image, orientation: int) -> None:
    data = _jpeg_with_orientation(original, orientation)
    digest = hash_image(data)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert (digest.width, digest.height) == upright.size
    assert hamming(digest.hashes.pdq, pdq_of(h.encode(upright, "PNG"))) <= 10


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_malformed_exif_is_ignored(original: Image.Image) -> None:
    data = h.encode(original, "JPEG", quality=95)
    garbage = b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff\xf0" + b"\xee" * 40
    segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    broken = data[:2] + segment + data[2:]
    digest = hash_image(broken)
    assert (digest.width, digest.height) == original.size
    assert digest.hashes.pdq == pdq_of(data)


def _half_transparent(hidden: np.ndarray, visible: np.ndarray) -> Image.Image:
    height, width = visible.shape[:2]
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., :3] = visible
    rgba[..., 3] = 255
    rgba[:, : width // 2, :3] = hidden[:, : width // 2]
    rgba[:, : width // 2, 3] = 0
    return Image.fromarray(rgba, "RGBA")


def test_transparent_pixels_are_composited_on_white(original: Image.Image) -> None:
    visible = np.asarray(original)
    rng = np.random.default_rng(5)
    black = _half_transparent(np.zeros_like(visible), visible)
    noisy = _half_transparent(rng.integers(0, 256, visible.shape, dtype=np.uint8), visible)
    white = visible.copy()
    white[:, : visible.shape[1] // 2] = 255
    expected = pdq_of(h.encode(Image.fromarray(white, "RGB"), "PNG"))
    # Whatever hides under full transparency, the hash is that of the image shown on white.
    assert pdq_of(h.encode(black, "PNG")) == expected
    assert pdq_of(h.encode(noisy, "PNG")) == expected
    assert pdq_of(h.encode(noisy, "WEBP", lossless=True)) == expected
    grey_shown = Image.fromarray(white, "RGB").convert("L")
    grey = noisy.convert("LA")
    assert pdq_of(h.encode(grey, "PNG")) == pdq_of(h.encode(grey_shown, "PNG"))


def test_palette_transparency_is_composited(original: Image.Image) -> None:
    # 63 colours in use; index 63 is the transparent one, painted over the top-left quarter.
    paletted = original.quantize(colors=63)
    pixels = np.asarray(paletted).copy()
    height, width = pixels.shape
    pixels[: height // 2, : width // 2] = 63
    marked = Image.fromarray(pixels, "P")
    palette = paletted.getpalette()
    assert palette is not None
    marked.putpalette([*palette[: 63 * 3], 0, 0, 0])
    shown = np.asarray(paletted.convert("RGB")).copy()
    shown[: height // 2, : width // 2] = 255
    expected = pdq_of(h.encode(Image.fromarray(shown, "RGB"), "PNG"))
    for fmt in ("GIF", "PNG"):
        digest = hash_image(h.encode(marked, fmt, transparency=63))
        assert digest.format == fmt
        assert digest.hashes.pdq == expected


def test_sixteen_bit_greyscale_is_scaled_not_clipped(original: Image.Image) -> None:
    grey8 = np.asarray(original.convert("L")).astype(np.uint16)
    grey16 = Image.fromarray(grey8 * 257)
    assert grey16.mode == "I;16"
    data16 = h.encode(grey16, "PNG")
    assert Image.open(io.BytesIO(data16)).mode == "I;16"
    reference = pdq_of(h.encode(Image.fromarray(grey8.astype(np.uint8), "L"), "PNG"))
    assert hamming(pdq_of(data16), reference) <= 4
    assert hamming(pdq_of(h.encode(grey16, "TIFF")), reference) <= 4


@pytest.mark.parametrize("mode", ["1", "L", "P", "CMYK", "YCbCr", "RGBX"])
def test_other_modes_hash_like_rgb(original: Image.Image, mode: str) -> None:
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG", "RGBX": "TIFF"}.get(mode, "PNG")
    data = h.encode(original.convert(mode), fmt)
    limit = 64 if mode == "1" else PDQ_MATCH  # 1-bit dithering changes a lot, but not all
    assert hamming(pdq_of(data), pdq_of(h.encode(original, "PNG"))) <= limit


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_images_hash_the_first_frame(fmt: str) -> None:
    frames = [h.generated_image(seed) for seed in (31, 32, 33)]
    options: dict[str, object] = {"save_all": True, "append_images": frames[1:], "duration": 100}
    if fmt == "WEBP":
        options["lossless"] = True
    animated = hash_image(h.encode(frames[0], fmt, **options))
    single = hash_image(h.encode(frames[0], fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert animated.animated is True and single.animated is False
    assert hamming(animated.hashes.pdq, single.hashes.pdq) <= 10
    assert animated.format == fmt


# --------------------------------------------------------------------------- limits


def test_pixel_cap_from_limits(original: Image.Image) -> None:
    data = h.encode(original, "PNG")
    with pytest.raises(PixelLimit):
        hash_image(data, limits=DecodeLimits(max_pixels=original.width * original.height - 1))
    assert hash_image(data, limits=DecodeLimits(max_pixels=original.width * original.height))


def test_pixel_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(PixelLimit):
        hash_image(h.pixel_bomb_png(20_000, 20_000))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_range_is_an_error() -> None:
    # 90 MP is above Pillow's MAX_IMAGE_PIXELS (warning range), below our raised cap.
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS < 10_000 * 9_000 < 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(PixelLimit):
        hash_image(h.pixel_bomb_png(10_000, 9_000), limits=DecodeLimits(max_pixels=200_000_000))


# --------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"<!doctype html><html></html>",
        b'{"json": true}',
        b"GIF8",
        b"\x89PNG",
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
        b"PK\x03\x04" + b"\x00" * 40,
    ],
)
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        hash_image(data)


def test_refused_image_formats(original: Image.Image) -> None:
    for fmt in ("ICO", "PPM", "TGA", "PCX", "QOI"):
        data = h.encode(original, fmt)
        with pytest.raises((UnsupportedFormat, NotAnImage)):
            hash_image(data)
    for data in (
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        b'<?xml version="1.0"?><svg/>',
        b"%PDF-1.7\n",
        b"%!PS-Adobe-3.0 EPSF",
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00",
        b"8BPS\x00\x01",
    ):
        with pytest.raises(UnsupportedFormat):
            hash_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_truncated_files_fail_cleanly(original: Image.Image, fmt: str) -> None:
    data = h.encode(original, fmt)
    with pytest.raises(DecodeFailed):
        hash_image(data[: len(data) // 3])


def test_magic_bytes_with_garbage() -> None:
    with pytest.raises(DecodeFailed):
        hash_image(b"\xff\xd8\xff" + b"\x13" * 500)
    with pytest.raises(ImageError):
        hash_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
