"""Benign synthetic images for the demo world, generated from a seed with numpy and Pillow.

Every image is abstract (gradients, low-frequency noise, random shapes; never text) and is
built from its own seed, so one image does not depend on how many others were made. Low-frequency
structure keeps distinct images far apart in PDQ; sharp shape edges keep PDQ quality high.
Variants (re-encoded, resized, converted) stay visually identical to their original so that a
perceptual hash still matches them.
"""

from __future__ import annotations

import io
from enum import StrEnum
from typing import Final

import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageFilter

JPEG: Final = "JPEG"
PNG: Final = "PNG"
CONTENT_TYPES: Final = {JPEG: "image/jpeg", PNG: "image/png"}
EXTENSIONS: Final = {JPEG: "jpg", PNG: "png"}


class VariantKind(StrEnum):
    """How a placed copy of a known image differs from the original bytes."""

    REQUALITY = "requality"  # JPEG re-encoded at another quality
    RESIZE = "resize"  # scaled to 60-90 % of each side, same format
    CONVERT = "convert"  # PNG -> JPEG or JPEG -> PNG
    # Copies changed to evade PDQ (issue 18): found by dihedral, trimmed or region matching.
    MIRROR = "mirror"  # flipped left-right
    ROTATE90 = "rotate90"
    ROTATE180 = "rotate180"
    ROTATE270 = "rotate270"
    BORDER = "border"  # a uniform frame of 5-15 % of each side around the whole image
    LETTERBOX = "letterbox"  # bars above and below, padding the image to a wider canvas
    CROP5 = "crop5"  # 5 % cut from each side
    CROP15 = "crop15"  # 15 % cut from each side


# The kinds that move PDQ far from the original (see make_variant), and the method that finds
# each by default (node.matching.matcher's Match.method).
EVASIVE_KINDS: Final = {
    VariantKind.MIRROR: "dihedral",
    VariantKind.ROTATE90: "dihedral",
    VariantKind.ROTATE180: "dihedral",
    VariantKind.ROTATE270: "dihedral",
    VariantKind.BORDER: "trimmed",
    VariantKind.LETTERBOX: "trimmed",
    VariantKind.CROP5: "region",
    VariantKind.CROP15: "region",
}


class ImageDecodeError(ValueError):
    """Bytes given to a variant function are not an image this module made."""


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, size=3))
    return (r, g, b)


_BACKGROUND_STEP: Final = 4  # the background is smooth: compute it at 1/4 size, then upsample


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A two-colour gradient (linear or radial) mixed with smooth value noise."""
    small_w = max(2, width // _BACKGROUND_STEP)
    small_h = max(2, height // _BACKGROUND_STEP)
    xs = np.linspace(0.0, 1.0, small_w, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, small_h, dtype=np.float32)[:, None]
    if rng.random() < 0.5:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
    else:
        cx, cy = rng.uniform(0.0, 1.0, size=2)
        t = np.hypot(xs - cx, ys - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    c0 = np.array(_random_color(rng), dtype=np.float32)
    c1 = np.array(_random_color(rng), dtype=np.float32)
    gradient = c0[None, None, :] * (1.0 - t[..., None]) + c1[None, None, :] * t[..., None]

    # Value noise: a coarse random grid upsampled smoothly. Its low-frequency layout differs per
    # image, which is what spreads PDQ hashes apart.
    cells = int(rng.integers(4, 11))
    grid = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    noise = np.asarray(
        Image.fromarray(grid, "RGB").resize((small_w, small_h), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    mix = rng.uniform(0.35, 0.7)
    small = np.clip(gradient * (1.0 - mix) + noise * mix, 0, 255).astype(np.uint8)
    return Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BICUBIC)


def _draw_shapes(rng: np.random.Generator, image: Image.Image) -> None:
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(int(rng.integers(8, 18))):
        kind = int(rng.integers(0, 4))
        # Shapes of 10-50 % of each side: large enough to shape the low frequencies, small
        # enough that no single shape flattens the image (which would lower PDQ quality).
        w = int(width * rng.uniform(0.1, 0.5))
        h = int(height * rng.uniform(0.1, 0.5))
        x0 = int(rng.integers(-w // 2, width - w // 2))
        y0 = int(rng.integers(-h // 2, height - h // 2))
        x1, y1 = x0 + w, y0 + h
        color = _random_color(rng)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=color)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=color)
        elif kind == 2:
            points = [
                (int(rng.integers(x0, x1 + 1)), int(rng.integers(y0, y1 + 1)))
                for _ in range(int(rng.integers(3, 7)))
            ]
            draw.polygon(points, fill=color)
        else:
            draw.line((x0, y0, x1, y1), fill=color, width=int(rng.integers(3, max(4, width // 12))))


def generate_image(seed: int | tuple[int, ...], width: int, height: int) -> Image.Image:
    """A benign abstract RGB image, fully determined by `seed` and the size."""
    rng = np.random.default_rng(list(seed) if isinstance(seed, tuple) else seed)
    image = _background(rng, width, height)
    _draw_shapes(rng, image)
    # A slight blur softens single-pixel aliasing, so that re-encoding and resizing move the
    # perceptual hash very little.
    return image.filter(ImageFilter.GaussianBlur(radius=1.0))


def encode(image: Image.Image, fmt: str, quality: int = 90) -> bytes:
    """Encode deterministically (no timestamps or other metadata)."""
    buffer = io.BytesIO()
    if fmt == JPEG:
        image.convert("RGB").save(buffer, format=JPEG, quality=quality, optimize=False)
    elif fmt == PNG:
        image.save(buffer, format=PNG, compress_level=3)
    else:
        raise ValueError(f"unsupported image format {fmt!r}")
    return buffer.getvalue()


def decode(data: bytes) -> tuple[Image.Image, str]:
    """Decode bytes made by `encode`; returns the image and its format."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(str(exc)) from exc
    fmt = image.format
    if fmt not in CONTENT_TYPES:
        raise ImageDecodeError(f"unexpected image format {fmt!r}")
    return image, fmt


def sniff_format(data: bytes) -> str:
    """JPEG or PNG from the magic bytes (cheaper than decoding)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8"):
        return JPEG
    raise ImageDecodeError("neither PNG nor JPEG")


def make_variant(data: bytes, kind: VariantKind, rng: np.random.Generator) -> bytes:
    """A visually identical copy of `data` with different bytes. Mild by design: no crops or
    rotations, so PDQ stays within its match distance of the original."""
    image, fmt = decode(data)
    if kind is VariantKind.REQUALITY:
        return encode(image, JPEG, quality=int(rng.integers(70, 86)))
    if kind is VariantKind.RESIZE:
        factor = float(rng.uniform(0.6, 0.9))
        size = (max(32, round(image.width * factor)), max(32, round(image.height * factor)))
        resized = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        return encode(resized, fmt, quality=int(rng.integers(85, 93)))
    if kind is VariantKind.CONVERT:
        if fmt == PNG:
            return encode(image, JPEG, quality=int(rng.integers(85, 93)))
        return encode(image.convert("RGB"), PNG)
    if kind in EVASIVE_KINDS:
        copy = evasive_copy(image.convert("RGB"), kind, rng)
        copy.thumbnail(PDQ_REDUCE_TO)  # a frame may grow it: the world stays within 512 px
        return encode(copy, fmt, quality=90)
    raise ValueError(f"unknown variant kind {kind!r}")


_TRANSPOSE: Final = {
    VariantKind.MIRROR: Image.Transpose.FLIP_LEFT_RIGHT,
    VariantKind.ROTATE90: Image.Transpose.ROTATE_90,
    VariantKind.ROTATE180: Image.Transpose.ROTATE_180,
    VariantKind.ROTATE270: Image.Transpose.ROTATE_270,
}
_CROP_SHARE: Final = {VariantKind.CROP5: 0.05, VariantKind.CROP15: 0.15}


def evasive_copy(image: Image.Image, kind: VariantKind, rng: np.random.Generator) -> Image.Image:
    """The image changed the way copies are changed to evade hash matching (issue 18)."""
    if kind in _TRANSPOSE:
        return image.transpose(_TRANSPOSE[kind])
    width, height = image.size
    if kind in _CROP_SHARE:
        share = _CROP_SHARE[kind]
        dx, dy = round(width * share), round(height * share)
        return image.crop((dx, dy, width - dx, height - dy))
    colour = _random_color(rng)
    if kind is VariantKind.BORDER:
        dx = round(width * rng.uniform(0.05, 0.15))
        dy = round(height * rng.uniform(0.05, 0.15))
        canvas = Image.new("RGB", (width + 2 * dx, height + 2 * dy), colour)
        canvas.paste(image, (dx, dy))
        return canvas
    if kind is VariantKind.LETTERBOX:
        # Black (or coloured) bars of 10-20 % of the height above and below a landscape image,
        # or beside a portrait one: the image padded to a fixed wider or taller frame.
        bar = (0, 0, 0) if rng.random() < 0.5 else colour
        if width >= height:
            pad = round(height * rng.uniform(0.1, 0.2))
            canvas = Image.new("RGB", (width, height + 2 * pad), bar)
            canvas.paste(image, (0, pad))
        else:
            pad = round(width * rng.uniform(0.1, 0.2))
            canvas = Image.new("RGB", (width + 2 * pad, height), bar)
            canvas.paste(image, (pad, 0))
        return canvas
    raise ValueError(f"not an evasive kind {kind!r}")


# The remote-hash function thumbnails to this size before PDQ; the world keeps every image at or
# below it so that what the world checks here is exactly what the function computes.
PDQ_REDUCE_TO: Final = (512, 512)


def pdq_of(data: bytes) -> tuple[int, int]:
    """PDQ hash (as a 256-bit int, bit 0 most significant) and quality of encoded image bytes.

    Used only while building the world, to guarantee its stated properties (distinct images far
    apart, variants close, quality high); the ground truth never depends on it.
    """
    image, _fmt = decode(data)
    rgb = image.convert("RGB")
    rgb.thumbnail(PDQ_REDUCE_TO)
    vector, quality = pdqhash.compute(np.asarray(rgb))
    value = 0
    for bit in vector:
        value = (value << 1) | int(bit)
    return value, int(quality)
