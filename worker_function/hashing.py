"""The hashing pipeline: bytes in memory -> ImageDigest. The same rules serve list building
(``libra hash``) and queries (``/v1/analyze``), so a list entry and a sighting of the same image
are hashed identically.

Decode rules (documented in docs/operations-function.md):
1. Sniff magic bytes; only JPEG, PNG, GIF, WEBP, BMP, TIFF reach Pillow, each only through its
   own plugin.
2. Refuse more than ``DecodeLimits.max_pixels`` pixels, and treat Pillow's own
   DecompressionBombWarning as an error, before any pixel is decoded.
3. First frame only; EXIF orientation applied (malformed EXIF is ignored).
4. To RGB: transparency is composited onto white; 16-bit greyscale is scaled (not clipped) to
   8 bits. Then to 8-bit luminance (ITU-R 601: the weights PDQ uses). Colour JPEGs are decoded
   straight to luminance (libjpeg's Y channel: no chroma decoding, no colour conversion).
5. Downscale with ``thumbnail((512, 512))`` (what Meta's pure-Python PDQ reference does); PDQ,
   pHash and dHash all come from this one reduced luminance copy. PDQ is computed in numpy
   (worker_function/pdq.py, bit-identical to pdqhash), pHash without scipy's import
   (worker_function/phash.py, bit-identical to imagehash). Cryptographic hashes cover the raw
   bytes.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import numpy.typing as npt
from PIL import Image

from protocol.models import ImageHashes

from .errors import DecodeFailed, ImageError, PixelLimit, UnsupportedFormat
from .pdq import pdq_dihedral_from_luma, pdq_from_luma, pdq_hex
from .phash import dhash_hex, phash_hex
from .regions import crop_target, region_hashes
from .sniff import sniff_format
from .trim import border_box

__all__ = ["pdq_hex"]  # re-exported: the hex convention is part of the pipeline's API

# Pillow only warns between MAX_IMAGE_PIXELS and twice that; a warning that is merely printed
# would let a decompression bomb through. Filters are process-global (catch_warnings is not
# thread-safe and decoding runs in threads), so the rule is installed once, here.
warnings.simplefilter("error", Image.DecompressionBombWarning)

PDQ_REDUCE_TO = (512, 512)
# pHash and dHash start from a box-reduced copy at least this large (twice pHash's 32 px).
SMALL_HASH_MIN_SIDE = 64
# Let libjpeg decode large JPEGs at a reduced scale; it only reduces while both sides stay at or
# above this, so the later 512 thumbnail sees the same kind of input. Verified against vectors.
JPEG_DRAFT_SIZE = (1024, 1024)

_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class DecodeLimits:
    # Largest image (width * height of the first frame) we decode. Pillow's own bomb check
    # (Image.MAX_IMAGE_PIXELS, about 89.5 MP) also applies, so the effective cap is the lower one.
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class ImageDigest:
    format: str  # Pillow format name, e.g. "JPEG", "PNG"
    width: int  # after EXIF orientation
    height: int
    animated: bool  # True if more than one frame (we hash the first frame only)
    hashes: ImageHashes


def hash_image(
    data: bytes,
    *,
    dihedral: bool = False,
    limits: DecodeLimits | None = None,
    regions: bool = False,
) -> ImageDigest:
    """Hash an image held in memory. Raises only ``ImageError`` subclasses on bad input.

    ``regions``: also the PDQ of overlapping regions (worker_function/regions.py), which list
    building stores with each entry so that cropped copies match (issue 18).
    """
    limits = limits or DecodeLimits()
    fmt = sniff_format(data)
    try:
        return _hash_decoded(data, fmt, dihedral, limits, regions)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PixelLimit(f"image exceeds the decoder's pixel limit: {exc}") from None
    except MemoryError:
        raise PixelLimit("image needs more memory than available to decode") from None
    except Exception as exc:
        # Untrusted input reaches a C decoder: any failure is this image's fault, not ours.
        raise DecodeFailed(f"{fmt} decode failed: {type(exc).__name__}: {exc}") from None


def _hash_decoded(
    data: bytes, fmt: str, dihedral: bool, limits: DecodeLimits, regions: bool
) -> ImageDigest:
    with Image.open(BytesIO(data), formats=[fmt]) as img:
        # MPO (multi-picture JPEG, common from cameras) is a JPEG whose first frame we hash.
        if img.format != fmt and not (fmt == "JPEG" and img.format == "MPO"):
            raise UnsupportedFormat(f"decoder identified {img.format}, magic bytes said {fmt}")
        width, height = img.size
        if width < 1 or height < 1:
            raise DecodeFailed("image has no pixels")
        cap = _pixel_cap(limits)
        if width * height > cap:
            raise PixelLimit(f"{width}x{height} = {width * height} pixels exceeds the cap {cap}")
        animated = bool(getattr(img, "is_animated", False))
        if animated:
            img.seek(0)
        orientation = _orientation(img)
        if orientation in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
        if fmt == "JPEG" and img.mode == "RGB":
            # libjpeg hands out its Y channel: the same ITU-R 601 luminance, at a fraction of
            # the cost (no chroma decoding or colour conversion). Reduced scale for big files.
            img.draft("L", JPEG_DRAFT_SIZE)
            luma = _transpose(img.convert("L"), orientation)
        else:
            if fmt == "JPEG":
                img.draft(img.mode, JPEG_DRAFT_SIZE)
            luma = _to_luma(_transpose(img, orientation))
    hashes = _compute_hashes(data, luma, dihedral, regions)
    return ImageDigest(format=fmt, width=width, height=height, animated=animated, hashes=hashes)


def _pixel_cap(limits: DecodeLimits) -> int:
    # Anything Pillow would only warn about is refused too, whatever the warning filters say
    # (test runners and embedding programs may reset them).
    pillow_cap = Image.MAX_IMAGE_PIXELS
    return limits.max_pixels if pillow_cap is None else min(limits.max_pixels, pillow_cap)


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        # Malformed EXIF must not cost a match: treat it as "no rotation".
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _transpose(img: Image.Image, orientation: int) -> Image.Image:
    # The same mapping as ImageOps.exif_transpose, applied to an orientation we read ourselves
    # (the reported width/height must follow it, and malformed EXIF must not raise).
    if orientation == 1:
        return img
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }[orientation]
    return img.transpose(method)


def _to_luma(img: Image.Image) -> Image.Image:
    """8-bit luminance of any decoded mode: ``_to_rgb(img).convert("L")``."""
    if img.mode in ("RGB", "L") and "transparency" not in img.info:
        # Nothing to composite or scale: converting to RGB first would only copy the pixels
        # (RGB) or round-trip them exactly (L: Pillow's weights sum to one).
        return img.convert("L")
    return _to_rgb(img).convert("L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB by one fixed rule."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's convert clips 16-bit samples at 255 (a mostly white image); scale instead.
        samples = np.asarray(img).astype(np.float64)
        scaled = np.clip(samples, 0, 65535) / 257.0
        return Image.fromarray(np.rint(scaled).astype(np.uint8)).convert("RGB")
    has_alpha = "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info
    if has_alpha:
        # Composite onto white: what a browser shows on the default background, and pixels hidden
        # under full transparency cannot change the hash.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, _WHITE)
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def _compute_hashes(data: bytes, luma: Image.Image, dihedral: bool, regions: bool) -> ImageHashes:
    """Hashes of the full-size luminance ``luma``, all defined on its 512 px thumbnail."""
    target = thumbnail_size(luma.size, PDQ_REDUCE_TO)
    full = np.asarray(luma, dtype=np.uint8)
    if _single_resize(luma.size, target):
        # The thumbnail would be one bicubic resize: PDQ folds it into its own filter matrices
        # (tested against the real thumbnail) and the small hashes box-reduce the original.
        pixels, resize_to = full, target
        small = _box_reduce(luma, SMALL_HASH_MIN_SIDE)
    else:
        thumb = luma.copy()
        thumb.thumbnail(PDQ_REDUCE_TO)
        pixels, resize_to = np.asarray(thumb, dtype=np.uint8), None
        small = _box_reduce(thumb, SMALL_HASH_MIN_SIDE)
    # One filter pass and one DCT; the 7 other dihedral hashes are sign changes of it.
    vectors, quality = _pdq(pixels, resize_to, dihedral)
    trimmed, trimmed_quality = _trimmed(pixels, dihedral)
    return ImageHashes(
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha1=hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        pdq=pdq_hex(vectors[0]),
        pdq_quality=quality,
        phash=phash_hex(small),
        dhash=dhash_hex(small),
        pdq_dihedral=[pdq_hex(v) for v in vectors] if dihedral else None,
        pdq_trimmed=trimmed,
        pdq_trimmed_quality=trimmed_quality,
        pdq_regions=region_hashes(pixels) if regions else None,
    )


def _trimmed(pixels: npt.NDArray[np.uint8], dihedral: bool) -> tuple[list[str] | None, int | None]:
    """PDQ of the image inside its uniform borders (with its dihedral variants if asked), or
    (None, None) when there is no border to trim (worker_function/trim.py)."""
    box = border_box(pixels)
    if box is None:
        return None, None
    inner = np.ascontiguousarray(pixels[box.top : box.bottom, box.left : box.right])
    vectors, quality = _pdq(inner, crop_target(inner.shape), dihedral)
    return [pdq_hex(v) for v in vectors], quality


def _pdq(
    pixels: npt.NDArray[np.uint8], resize_to: tuple[int, int] | None, dihedral: bool
) -> tuple[list[npt.NDArray[np.uint8]], int]:
    """The PDQ bits (the 8 dihedral variants, or only the original's) and the quality. Without
    ``dihedral`` the 7 variants are not derived: a sixth of a small image's hashing (issue 17);
    the original's bits are the same either way (its variant changes no sign)."""
    if dihedral:
        return pdq_dihedral_from_luma(pixels, resize_to)
    bits, quality = pdq_from_luma(pixels, resize_to)
    return [bits], quality


def thumbnail_size(size: tuple[int, int], bound: tuple[int, int]) -> tuple[int, int]:
    """The size ``Image.thumbnail(bound)`` gives an image of ``size`` (Pillow's own rounding)."""
    width, height = size
    x, y = bound
    if x >= width and y >= height:
        return size

    def round_aspect(number: float, key: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    aspect = width / height
    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def _single_resize(size: tuple[int, int], target: tuple[int, int]) -> bool:
    # thumbnail() box-reduces first when the image is over twice the target (reducing_gap=2).
    return size != target and all(int(s / t / 2.0) <= 1 for s, t in zip(size, target, strict=True))


def _box_reduce(img: Image.Image, min_side: int) -> Image.Image:
    """Box-average by whole factors while both sides stay >= ``min_side`` (cheap, exact means).

    pHash (32 x 32) and dHash (9 x 8) then resample a 64+ px image instead of a 512 px one, which
    makes their Lanczos step ~50 times cheaper; Pillow's ``reducing_gap`` does the same.
    """
    width, height = img.size
    factors = (max(1, width // min_side), max(1, height // min_side))
    return img if factors == (1, 1) else img.reduce(factors)
