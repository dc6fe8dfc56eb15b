"""NCMEC hash-sharing XML (the v2 API's ``queryResult`` documents, saved to a file).

Structure (default namespace ``https://hashsharing.ncmec.org/hashsharing/v2``; any namespace
or none is accepted, matching is by local name)::

    <queryResult xmlns="...">
      <images count="2" maxTimestamp="...">
        <image><member id="42">...</member><timestamp>...</timestamp><id>image1</id>
          <classification>A1</classification>
          <fingerprints><md5>..</md5><sha1>..</sha1><pdna>..</pdna><pdq>..</pdq></fingerprints>
        </image>
        <deletedImage><member id="43">...</member><id>image4</id>...</deletedImage>
      </images>
      <videos>...<video>...</video><deletedVideo>...</deletedVideo></videos>
    </queryResult>

Each ``<image>``/``<video>`` becomes one record per fingerprint, labelled with the entry's
``id`` (element, or attribute in older files) and categorised by its ``<classification>``.
The feed is a change log: an entry whose values are already held updates their
classification (``ImportedRecord.updates``), and ``<deletedImage>``/``<deletedVideo>`` (or
an entry with ``willdelete="true"`` / ``deleted="true"``) withdraws the entry with that id
(DeletedRecord). A status document (``<status>``: server status, no entries) has nothing to
import.

Parsed incrementally with defusedxml's iterparse (no entity expansion, no external
entities, no DTD), and every handled entry is removed from its parent so memory stays flat.
A syntax error is a broken file: ListFormatError with its line and column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from node.lists.base import (
    MAX_REJECTED_TEXT,
    DeletedRecord,
    ListFamily,
    ListFormatError,
    Media,
    Record,
    RejectedRecord,
    StoredFamily,
    content_stream,
    parse_record,
    register,
)
from protocol.hashes import HashFamily

FINGERPRINTS: dict[str, ListFamily] = {
    "md5": HashFamily.MD5,
    "sha1": HashFamily.SHA1,
    "sha256": HashFamily.SHA256,
    "pdna": StoredFamily.PHOTODNA,
    "pdq": HashFamily.PDQ,
}
ENTRY_TAGS: dict[str, Media] = {"image": Media.IMAGE, "video": Media.VIDEO}
DELETED_TAGS: dict[str, Media] = {"deletedimage": Media.IMAGE, "deletedvideo": Media.VIDEO}
STATUS_TAG = "status"
_TRUE = ("true", "1", "yes")


def _local(tag: object) -> str:
    # Comments and processing instructions have a callable tag: not an element name.
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _child_text(element: Element, name: str) -> str | None:
    """Text of the first direct child called ``name`` in any namespace (None if empty)."""
    for child in element:
        if _local(child.tag) == name:
            text = (child.text or "").strip()
            return text or None
    return None


def _entry_id(element: Element) -> str | None:
    text = element.get("id") or _child_text(element, "id") or _child_text(element, "filename")
    return text.strip()[:MAX_REJECTED_TEXT] if text and text.strip() else None


def _is_deleted(element: Element) -> bool:
    flag = (element.get("willdelete") or element.get("deleted") or "").strip().lower()
    return flag in _TRUE


def _entry(element: Element, media: Media, number: int) -> Iterator[Record]:
    label = _entry_id(element)
    tag = _local(element.tag)
    if _is_deleted(element):
        if label is None:
            yield RejectedRecord(number, f"<{tag}> #{number}", "deletion without an id")
        else:
            yield DeletedRecord(number, label, media)
        return
    category = (
        _child_text(element, "classification")
        or element.get("classification")
        or element.get("category")
        or _child_text(element, "category")
    )
    found = False
    for node in element.iter():
        family = FINGERPRINTS.get(_local(node.tag))
        value = (node.text or "").strip()
        if family is None or not value:
            continue
        found = True
        yield parse_record(family, value, number, label, category, media, updates=True)
    if not found:
        yield RejectedRecord(number, f"<{tag}> #{number} (id {label})", "no fingerprint")


def _deleted(element: Element, media: Media, number: int) -> Record:
    label = _entry_id(element)
    if label is None:
        tag = _local(element.tag)
        return RejectedRecord(number, f"<{tag}> #{number}", "deletion without an id")
    return DeletedRecord(number, label, media)


@dataclass(frozen=True)
class NcmecImporter:
    algorithm: HashFamily | None = None  # the XML names each fingerprint
    name: str = "ncmec"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[Record]:
        data = content_stream(stream)
        if data is None:
            return  # an empty download: nothing to import (the store says so)
        number = 0
        path: list[Element] = []  # open elements, root first: an entry's parent is path[-2]
        inside = 0  # depth of nested entry elements (an <image> inside an <image>)
        try:
            for event, element in iterparse(data, events=("start", "end"), forbid_dtd=True):
                name = _local(element.tag)
                if event == "start":
                    if not path and name == STATUS_TAG:
                        number += 1
                        yield RejectedRecord(
                            number,
                            "<status>",
                            "an NCMEC status document (server status, no entries): "
                            "nothing to import",
                        )
                    path.append(element)
                    if name in ENTRY_TAGS or name in DELETED_TAGS:
                        inside += 1
                    continue
                path.pop()
                if name not in ENTRY_TAGS and name not in DELETED_TAGS:
                    continue
                inside -= 1
                if inside:
                    continue  # a nested entry is part of its outer entry
                number += 1
                if name in ENTRY_TAGS:
                    yield from _entry(element, ENTRY_TAGS[name], number)
                else:
                    yield _deleted(element, DELETED_TAGS[name], number)
                element.clear()
                if path:  # drop it from its parent too: million-entry files stay flat
                    path[-1].remove(element)
        except ParseError as exc:
            line, column = exc.position
            raise ListFormatError(f"line {line}, column {column}", "malformed XML") from exc
        except DefusedXmlException as exc:
            raise ListFormatError(f"after entry #{number}", f"refused XML: {exc}") from exc


register("ncmec", NcmecImporter)
