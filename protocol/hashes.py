"""Hash families: a registry of small specs, so a new family is one entry, not an edit across
the tree. Values travel as lowercase hex."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


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
