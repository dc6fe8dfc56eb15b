"""Magic-byte sniffing: decide what the bytes are before any decoder sees them.

Content-Type and file names are never trusted. Only the allow-listed formats reach Pillow, and
each only through its own plugin, so a file cannot smuggle itself into a riskier decoder.
"""

from __future__ import annotations

from .errors import NotAnImage, UnsupportedFormat
from .video.sniff import could_be_video

# Pillow format names we decode. Everything else is refused before decoding.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

# Bytes needed to tell every signature below apart.
SNIFF_BYTES = 16

_ALLOWED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)

# Recognised image (or image-like) formats that we deliberately do not decode: reported as
# unsupported_format rather than not_an_image so that operators can see what they are missing.
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"8BPS", "PSD"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"icns", "ICNS"),
    (b"DDS ", "DDS"),
)

_ISOBMFF_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}


def sniff_format(data: bytes) -> str:
    """Return the Pillow format name for ``data`` or raise NotAnImage / UnsupportedFormat."""
    head = data[:SNIFF_BYTES]
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _ALLOWED_SIGNATURES:
        if head.startswith(magic):
            return name
    for magic, name in _REFUSED_SIGNATURES:
        if head.startswith(magic):
            raise UnsupportedFormat(f"{name} images are not supported")
    if head[4:8] == b"ftyp" and head[8:12] in _ISOBMFF_IMAGE_BRANDS:
        brand = head[8:12].decode("ascii")
        raise UnsupportedFormat(f"{brand} (HEIF/AVIF) images are not supported")
    if _looks_like_svg(data):
        raise UnsupportedFormat("SVG images are not supported")
    raise NotAnImage("the content is not an image of a supported format (magic bytes unknown)")


def _looks_like_svg(data: bytes) -> bool:
    start = data[:512].lstrip().lower()
    return start.startswith(b"<svg") or (start.startswith(b"<?xml") and b"<svg" in start)


def could_be_image(prefix: bytes) -> bool:
    """True unless ``prefix`` (the first bytes of a download) is certainly not an image.

    Lets the fetcher stop reading an HTML page or other non-image early.
    """
    if could_be_video(prefix):
        return True  # issue 13: the function hashes videos too (worker_function/video/)
    try:
        sniff_format(prefix)
    except NotAnImage:
        return len(prefix) < SNIFF_BYTES
    except UnsupportedFormat:
        return False
    return True
