"""The list-importer interface and its plug-in registry (one importer per file format).

An importer turns a byte stream into records: each record either becomes an ImportedRecord
(normalised hash of a known family) or a RejectedRecord with its position and the reason.
A file that cannot be read as its format at all raises ListFormatError with the position;
the store then rolls the whole import back. Importers do not touch the database;
node.lists.store does, in one transaction.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, BinaryIO, Protocol, TextIO, cast

from protocol.hashes import HashFamily, InvalidHash, normalize

MAX_REJECTED_TEXT = 120  # keep reports of garbage records readable


class StoredFamily(StrEnum):
    """Families the node stores and exports but never computes or matches (licence)."""

    PHOTODNA = "photodna"


class VideoFamily(StrEnum):
    """Hashes of a whole video (issue 13): matched by the node's video index
    (node/matching/video_index.py), never by the image index."""

    VPDQ = "vpdq"


ListFamily = HashFamily | StoredFamily | VideoFamily
PHOTODNA_BYTES = 144
# A listed video's frames at most: two hours at the function's default one frame a second.
MAX_VPDQ_FRAMES = 7200
_HEX = re.compile(r"^[0-9a-f]+$")


def list_family(name: str) -> ListFamily:
    for kind in (HashFamily, StoredFamily):
        try:
            return kind(name)
        except ValueError:
            continue
    return VideoFamily(name)


def normalize_vpdq(value: str) -> str:
    """A vPDQ hash in any text form found in the field (Meta's ``frame,quality,pdq,timestamp``
    lines, pytx/HMA's signal string, pytx's older object), stored as pytx's signal string:
    one spelling per video, so a re-import is a duplicate."""
    from node.matching.vpdq_text import VpdqTextError, format_pytx, parse

    try:
        frames = parse(value)
    except VpdqTextError as exc:
        raise InvalidHash(f"vpdq: {exc}") from None
    if not frames:
        raise InvalidHash("vpdq: a video hash needs at least one frame")
    if len(frames) > MAX_VPDQ_FRAMES:
        raise InvalidHash(f"vpdq: {len(frames)} frames, more than {MAX_VPDQ_FRAMES}")
    return format_pytx(frames)


def normalize_value(family: ListFamily, value: str) -> str:
    """Lowercase hex of a value of ``family``; PhotoDNA also from base64 or comma decimals;
    vPDQ as its canonical signal string."""
    if isinstance(family, HashFamily):
        return normalize(family, value)
    if isinstance(family, VideoFamily):
        return normalize_vpdq(value)
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
        except ValueError:  # binascii.Error, or non-ASCII text (found by the fuzz tests)
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


class Media(StrEnum):
    """What a listed hash was computed over: an image's file or pixels, or a video's file or
    frames (vPDQ, issue 13)."""

    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True)
class ImportedRecord:
    family: ListFamily
    value: str  # normalised lowercase hex
    line: int  # line number, or record number in formats without lines (JSON, XML)
    label: str | None = None
    category: str | None = None
    media: Media = Media.IMAGE
    # The source is a change feed (NCMEC): a value already held takes this record's
    # category, and so do the other values held under the same label.
    updates: bool = False
    # Derived PDQ region hashes of the listed image (issue 18, `libra hash --regions`).
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class RejectedRecord:
    line: int
    text: str
    reason: str


@dataclass(frozen=True)
class DeletedRecord:
    """The source withdrew an entry: by its id (NCMEC ``<deletedImage>``: the values held
    under that label) or, when ``value`` is set, that one value of ``family`` (StopNCII,
    TCAP). Only entries imported in the same format are touched."""

    line: int
    label: str | None
    media: Media = Media.IMAGE
    family: ListFamily | None = None
    value: str | None = None  # normalised like ImportedRecord.value


Record = ImportedRecord | RejectedRecord | DeletedRecord


class ListImporter(Protocol):
    @property
    def name(self) -> str:
        """The format name the importer is registered under."""
        ...

    def records(self, stream: BinaryIO | TextIO) -> Iterator[Record]: ...


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


class _Chain(io.RawIOBase):
    """``head`` then the rest of ``stream``: puts back bytes read ahead."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


_BLANK = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


def content_stream(stream: BinaryIO | TextIO) -> BinaryIO | None:
    """The bytes of a JSON/XML file without a UTF-8 BOM, or None if the file holds nothing
    but white space (a 0-byte download is "nothing to import", not a broken file)."""
    raw = binary_stream(stream)
    head = raw.read(3)
    if head.startswith(_BOM):
        head = head[3:]
    while not head.strip(_BLANK):
        chunk = raw.read(4096)
        if not chunk:
            return None
        head = chunk
    return cast(BinaryIO, io.BufferedReader(_Chain(head.lstrip(_BLANK), raw)))


def parse_record(
    family: ListFamily,
    value: str,
    line: int,
    label: str | None,
    category: str | None,
    media: Media = Media.IMAGE,
    updates: bool = False,
) -> ImportedRecord | RejectedRecord:
    try:
        normal = normalize_value(family, value)
    except InvalidHash as exc:
        return RejectedRecord(line, value[:MAX_REJECTED_TEXT], str(exc))
    if isinstance(family, VideoFamily):
        media = Media.VIDEO  # whatever the format says, a vPDQ hash is of a video
    return ImportedRecord(family, normal, line, label, category, media, updates)


# Family names as the list formats spell them.
ALIASES: dict[str, ListFamily] = {
    "video_sha256": HashFamily.SHA256,
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
    "vpdq": VideoFamily.VPDQ,
    "video_vpdq": VideoFamily.VPDQ,
}


# Names that say the hash is of a video file (python-threatexchange signal types).
VIDEO_ALIASES = frozenset({"video_md5", "video_sha256", "vpdq", "video_vpdq"})


def family_alias(name: str) -> ListFamily | None:
    return ALIASES.get(name.strip().lower())


def media_of_alias(name: str) -> Media:
    return Media.VIDEO if name.strip().lower() in VIDEO_ALIASES else Media.IMAGE


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
