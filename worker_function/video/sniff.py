"""Which video container the bytes are, from their magic bytes alone (never Content-Type).

Only these containers reach FFmpeg, each through its own demuxer (``DEMUXERS``), so a file
cannot pick a riskier demuxer (HLS playlists, image2 patterns, concat lists) for itself.
"""

from __future__ import annotations

# Our container name -> the FFmpeg demuxer that alone may read it.
DEMUXERS: dict[str, str] = {
    "mp4": "mov",
    "mov": "mov",
    "webm": "matroska",
    "mkv": "matroska",
    "avi": "avi",
}

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_DOCTYPE_ID = b"\x42\x82"
# ISO-BMFF brands of still images (HEIF/AVIF): images, refused by the image sniffer instead.
_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}
# Bytes enough to see an EBML header's DocType (it comes within the first few dozen).
VIDEO_SNIFF_BYTES = 64


def sniff_video(data: bytes) -> str | None:
    """The container name ("mp4", "mov", "webm", "mkv", "avi") of ``data``, or None."""
    head = data[:VIDEO_SNIFF_BYTES]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        return "mov" if brand == b"qt  " else "mp4"
    if head.startswith(_EBML_MAGIC):
        at = head.find(_DOCTYPE_ID)
        # DocType: id, one-byte size (0x80 | n), then n ASCII bytes.
        if at >= 0 and at + 3 <= len(head):
            size = head[at + 2] & 0x7F
            if head[at + 3 : at + 3 + size] == b"webm":
                return "webm"
        return "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def could_be_video(prefix: bytes) -> bool:
    """True if the first bytes of a download start like one of our video containers."""
    return sniff_video(prefix) is not None
