"""Hash families: a registry of small specs, so a new family is one entry, not an edit across
the tree. Values travel as lowercase hex."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class HashFamily(StrEnum):
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    PDQ = "pdq"
    PHASH = "phash"
    DHASH = "dhash"


@dataclass(frozen=True)
class FamilySpec:
    family: HashFamily
    bits: int
    perceptual: bool
    # Matching precedence when one image matches several families: stronger evidence first.
    precedence: int
    default_max_distance: int = 0

    @property
    def hex_length(self) -> int:
        return self.bits // 4


FAMILIES: dict[HashFamily, FamilySpec] = {
    HashFamily.SHA256: FamilySpec(HashFamily.SHA256, 256, False, 0),
    HashFamily.SHA1: FamilySpec(HashFamily.SHA1, 160, False, 1),
    HashFamily.MD5: FamilySpec(HashFamily.MD5, 128, False, 2),
    HashFamily.PDQ: FamilySpec(HashFamily.PDQ, 256, True, 3, default_max_distance=31),
    HashFamily.PHASH: FamilySpec(HashFamily.PHASH, 64, True, 4, default_max_distance=8),
    HashFamily.DHASH: FamilySpec(HashFamily.DHASH, 64, True, 5, default_max_distance=8),
}

PDQ_MIN_QUALITY = 50

_HEX = re.compile(r"^[0-9a-f]+$")


class InvalidHash(ValueError):
    """A value that is not a well-formed hash of its family."""


def normalize(family: HashFamily, value: str) -> str:
    text = value.strip().lower()
    spec = FAMILIES[family]
    if len(text) != spec.hex_length or not _HEX.match(text):
        raise InvalidHash(f"{family.value} needs {spec.hex_length} hex digits, got {value!r}")
    return text


def family_from_length(value: str) -> HashFamily:
    """Guess the family from hex length. 64 hex digits is ambiguous (SHA-256 or PDQ): refuse."""
    text = value.strip().lower()
    if not _HEX.match(text or "x"):
        raise InvalidHash(f"not hex: {value!r}")
    by_length = {32: HashFamily.MD5, 40: HashFamily.SHA1}
    if len(text) in by_length:
        return by_length[len(text)]
    if len(text) == 64:
        raise InvalidHash("64 hex digits may be SHA-256 or PDQ: name the family (--algorithm)")
    if len(text) == 16:
        raise InvalidHash("16 hex digits may be pHash or dHash: name the family (--algorithm)")
    raise InvalidHash(f"no hash family has {len(text)} hex digits")


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


class ReportFamily(StrEnum):
    """The family a report cell counts matches under (issue 13).

    Every HashFamily value (same wire strings, so older reports stay valid byte for byte) plus
    the video families. Kept apart from HashFamily on purpose: HashFamily/FAMILIES drive hashing
    and the matcher's index, which these report-only names must not enter.
    """

    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    PDQ = "pdq"
    PHASH = "phash"
    DHASH = "dhash"
    # A listed video file's cryptographic hash matched the fetched video's bytes.
    VIDEO_MD5 = "video-md5"
    VIDEO_SHA1 = "video-sha1"
    VIDEO_SHA256 = "video-sha256"
    # A fetched video matched a listed video under vPDQ.
    VPDQ = "vpdq"
    # A fetched IMAGE matched a frame of a listed video: a still taken from a known video.
    VPDQ_FRAME = "vpdq-frame"


Media = Literal["image", "video"]
MEDIA: tuple[Media, ...] = ("image", "video")

_VIDEO_REPORT_FAMILIES = frozenset(
    {
        ReportFamily.VIDEO_MD5,
        ReportFamily.VIDEO_SHA1,
        ReportFamily.VIDEO_SHA256,
        ReportFamily.VPDQ,
    }
)

_VIDEO_BYTES_FAMILY = {
    HashFamily.MD5: ReportFamily.VIDEO_MD5,
    HashFamily.SHA1: ReportFamily.VIDEO_SHA1,
    HashFamily.SHA256: ReportFamily.VIDEO_SHA256,
}


def media_of(family: ReportFamily) -> Media:
    """What was found: "video" for the video-* and vpdq families. vpdq-frame is "image": the
    thing found on the web was a still, even though the listed item is a video."""
    return "video" if ReportFamily(family) in _VIDEO_REPORT_FAMILIES else "image"


def report_family_of(family: HashFamily, media: str, listed_media: str = "image") -> ReportFamily:
    """The report family for a sighting matched by ``family`` on fetched ``media``.

    Images matched against listed images keep their hash family's name. On a video, a
    cryptographic hash becomes its video-* family and a perceptual match is vPDQ (the only
    perceptual family for video). An image matched by PDQ against a frame of a listed video
    (``listed_media="video"``) is vpdq-frame.
    """
    hash_family = HashFamily(family)
    for name, value in (("media", media), ("listed_media", listed_media)):
        if value not in MEDIA:
            raise ValueError(f"{name} must be 'image' or 'video', got {value!r}")
    if media == "image" and listed_media == "image":
        return ReportFamily(hash_family.value)
    if media == "image":
        if hash_family is HashFamily.PDQ:
            return ReportFamily.VPDQ_FRAME
        raise ValueError(f"an image matches a listed video only by pdq, not {hash_family.value}")
    if hash_family in _VIDEO_BYTES_FAMILY:
        return _VIDEO_BYTES_FAMILY[hash_family]
    if hash_family is HashFamily.PDQ:
        return ReportFamily.VPDQ
    raise ValueError(f"{hash_family.value} has no video report family")
