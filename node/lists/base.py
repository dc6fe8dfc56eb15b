"""The list-importer interface and its plug-in registry (one importer per file format).

An importer turns a byte stream into records: each record either becomes an ImportedRecord
(normalised hash of a known family) or a RejectedRecord with its position and the reason.
A file that cannot be read as its format at all raises ListFormatError with the position;
the store then rolls the whole import back. Importers do not touch the database;
node.lists.store does, in one transaction.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO, Protocol, TextIO, cast

from protocol.hashes import HashFamily, InvalidHash, normalize

MAX_REJECTED_TEXT = 120  # keep reports of garbage records readable


class StoredFamily(StrEnum):
    """Families the node stores and exports but never computes or matches (licence)."""

    PHOTODNA = "photodna"


ListFamily = HashFamily | StoredFamily
PHOTODNA_BYTES = 144
_HEX = re.compile(r"^[0-9a-f]+$")


def list_family(name: str) -> ListFamily:
    try:
        return HashFamily(name)
    except ValueError:
        return StoredFamily(name)


def normalize_value(family: ListFamily, value: str) -> str:
    """Lowercase hex of a value of ``family``; PhotoDNA also from base64 or comma decimals."""
    if isinstance(family, HashFamily):
        return normalize(family, value)
    text = value.strip()
    raw: bytes | None = None
    if len(text) == PHOTODNA_BYTES * 2 and _HEX.match(text.lower()):
        return text.lower()
    if "," in text:
        try:
            raw = bytes(int(part) for part in text.split(","))
        except ValueError:
            raw = None
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raw = None
    if raw is None or len(raw) != PHOTODNA_BYTES:
        raise InvalidHash(f"photodna needs {PHOTODNA_BYTES} bytes (hex, base64 or decimals)")
    return raw.hex()


class ListFormatError(ValueError):
    """The file is not readable as its format; ``where`` says where it broke."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class ImportedRecord:
    family: ListFamily
    value: str  # normalised lowercase hex
    line: int  # line number, or record number in formats without lines (JSON, XML)
    label: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class RejectedRecord:
    line: int
    text: str
    reason: str


class ListImporter(Protocol):
    @property
    def name(self) -> str:
        """The format name the importer is registered under."""
        ...

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]: ...


def text_stream(stream: BinaryIO | TextIO) -> Iterator[str]:
    """UTF-8 text lines over a byte stream; a BOM is dropped, undecodable bytes become U+FFFD
    (so that record is rejected, not the file). Text streams (tests, stdin) pass through."""
    if isinstance(stream, io.TextIOBase):
        for number, line in enumerate(stream):
            yield line.lstrip("\ufeff") if number == 0 else line
        return
    yield from io.TextIOWrapper(
        binary_stream(stream), encoding="utf-8-sig", errors="replace", newline=""
    )


def binary_stream(stream: BinaryIO | TextIO) -> BinaryIO:
    """Bytes for the JSON/XML parsers; a text stream (tests) is encoded in memory."""
    if isinstance(stream, io.TextIOBase):
        return io.BytesIO(stream.read().encode())
    return cast(BinaryIO, stream)


def parse_record(
    family: ListFamily, value: str, line: int, label: str | None, category: str | None
) -> ImportedRecord | RejectedRecord:
    try:
        return ImportedRecord(family, normalize_value(family, value), line, label, category)
    except InvalidHash as exc:
        return RejectedRecord(line, value[:MAX_REJECTED_TEXT], str(exc))


# Family names as the list formats spell them.
ALIASES: dict[str, ListFamily] = {
    "md5": HashFamily.MD5,
    "photo_md5": HashFamily.MD5,
    "video_md5": HashFamily.MD5,
    "sha1": HashFamily.SHA1,
    "sha-1": HashFamily.SHA1,
    "sha256": HashFamily.SHA256,
    "sha-256": HashFamily.SHA256,
    "pdq": HashFamily.PDQ,
    "phash": HashFamily.PHASH,
    "dhash": HashFamily.DHASH,
    "photodna": StoredFamily.PHOTODNA,
    "pdna": StoredFamily.PHOTODNA,
}


def family_alias(name: str) -> ListFamily | None:
    return ALIASES.get(name.strip().lower())


# A factory gets the family forced on the command line (--algorithm), or None.
ImporterFactory = Callable[[HashFamily | None], ListImporter]


class UnknownFormat(KeyError):
    """No importer is registered under that format name."""


_REGISTRY: dict[str, ImporterFactory] = {}


def register(name: str, factory: ImporterFactory) -> None:
    if name in _REGISTRY:
        raise ValueError(f"list format {name!r} is already registered")
    _REGISTRY[name] = factory


def get_importer(name: str, algorithm: HashFamily | None = None) -> ListImporter:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownFormat(f"unknown list format {name!r} (known: {known})") from None
    return factory(algorithm)


def formats() -> list[str]:
    return sorted(_REGISTRY)
