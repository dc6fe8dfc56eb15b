"""NCMEC hash-sharing XML: ``<image>`` and ``<video>`` elements with ``<fingerprints>``
holding ``md5``, ``sha1``, ``pdna`` (PhotoDNA, stored only) and ``pdq`` where given.

Parsed incrementally with defusedxml's iterparse (no entity expansion, no external
entities, no DTD fetching), clearing each element once handled so memory stays flat. A
syntax error is a broken file: ListFormatError with its line and column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from protocol.hashes import HashFamily

from .base import (
    ImportedRecord,
    ListFamily,
    ListFormatError,
    RejectedRecord,
    StoredFamily,
    binary_stream,
    parse_record,
    register,
)

FINGERPRINTS: dict[str, ListFamily] = {
    "md5": HashFamily.MD5,
    "sha1": HashFamily.SHA1,
    "sha256": HashFamily.SHA256,
    "pdna": StoredFamily.PHOTODNA,
    "pdq": HashFamily.PDQ,
}
MEDIA_TAGS = ("image", "video")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()  # ignore XML namespaces


def _records(media: Element, number: int) -> Iterator[ImportedRecord | RejectedRecord]:
    label = media.get("id") or media.findtext("id") or media.findtext("fileName") or None
    category = media.get("category") or media.findtext("category") or None
    found = False
    for element in media.iter():
        family = FINGERPRINTS.get(_local(element.tag))
        if family is None:
            continue
        value = (element.text or "").strip()
        if not value:
            continue
        found = True
        yield parse_record(family, value, number, label, category)
    if not found:
        yield RejectedRecord(number, f"<{_local(media.tag)}> #{number}", "no fingerprint")


@dataclass(frozen=True)
class NcmecImporter:
    algorithm: HashFamily | None = None  # the XML names each fingerprint
    name: str = "ncmec"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        number = 0
        depth = 0
        try:
            for event, element in iterparse(
                binary_stream(stream), events=("start", "end"), forbid_dtd=True
            ):
                if _local(element.tag) not in MEDIA_TAGS:
                    continue
                if event == "start":
                    depth += 1
                    continue
                depth -= 1
                if depth == 0:
                    number += 1
                    yield from _records(element, number)
                    element.clear()  # keep memory flat on million-record files
        except ParseError as exc:
            line, column = exc.position
            raise ListFormatError(f"line {line}, column {column}", "malformed XML") from exc
        except DefusedXmlException as exc:
            raise ListFormatError(f"after record #{number}", f"refused XML: {exc}") from exc


register("ncmec", NcmecImporter)
