"""Project VIC VICS JSON, versions 1.x (``odata.metadata``) and 2.0 (``@odata.context``).

Streamed with ijson, so a hash set of millions of Media never sits in memory: Media objects
are built one at a time from ``value[]`` and, in case exports, from ``value[i].Media[]``. Each
hash of a Media (MD5, SHA1, SHA256, PhotoDNA and AlternativeHashes such as PDQ) becomes one
record; ``MediaID`` is the label, ``Category`` the category. A Media carrying a video hash
(vPDQ in AlternativeHashes) is a video: every one of its hashes is recorded with media
"video", its MD5/SHA-1/SHA-256 included (they are the video file's digests). A UTF-8 BOM,
upper-case hex and "true"/"false" strings are tolerated. Record numbers count Media in file
order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

import ijson  # type: ignore[import-untyped]

from node.lists.base import (
    ImportedRecord,
    ListFamily,
    ListFormatError,
    Media,
    RejectedRecord,
    StoredFamily,
    content_stream,
    family_alias,
    media_of_alias,
    parse_record,
    register,
)
from protocol.hashes import HashFamily

MEDIA_FIELDS: dict[str, ListFamily] = {
    "MD5": HashFamily.MD5,
    "SHA1": HashFamily.SHA1,
    "SHA256": HashFamily.SHA256,
    "PhotoDNA": StoredFamily.PHOTODNA,
}
TOP = "value.item"
NESTED = "value.item.Media.item"


def _is_video(alternatives: list[Any]) -> bool:
    """A Media is a video when it carries a video hash we know (vPDQ): VICS has no field of
    its own that says so. Other vendors' video hashes are not ours and decide nothing."""
    for alt in alternatives:
        if isinstance(alt, dict) and media_of_alias(str(alt.get("HashName", ""))) == Media.VIDEO:
            return True
    return False


def _media_records(media: dict[str, Any], number: int) -> Iterator[ImportedRecord | RejectedRecord]:
    label_raw = media.get("MediaID")
    label = None if label_raw in (None, "") else str(label_raw)
    category_raw = media.get("Category")
    category = None if category_raw in (None, "") else str(category_raw)
    raw = media.get("AlternativeHashes")
    alternatives: list[Any] = raw if isinstance(raw, list) else []
    # Every hash of a video's Media is of the video: its file digests too, not only its vPDQ
    # (an image's MD5 and a video's MD5 are counted under different report families).
    kind = Media.VIDEO if _is_video(alternatives) else Media.IMAGE
    found = False
    for field, family in MEDIA_FIELDS.items():
        value = media.get(field)
        if isinstance(value, str) and value.strip():
            found = True
            yield parse_record(family, value, number, label, category, kind)
    for alt in alternatives:
        if not isinstance(alt, dict):
            continue
        name, value = str(alt.get("HashName", "")), alt.get("HashValue")
        alt_family = family_alias(name)
        if alt_family is None or not isinstance(value, str):
            continue  # other vendors' hashes (e.g. proprietary video hashes): not ours
        found = True
        yield parse_record(alt_family, value, number, label, category, kind)
    if not found:
        yield RejectedRecord(number, f"Media #{number} (MediaID {label})", "no usable hash")


@dataclass(frozen=True)
class VicsImporter:
    algorithm: HashFamily | None = None  # VICS names its hashes; --algorithm is ignored
    name: str = "vics"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        data = content_stream(stream)
        if data is None:
            return  # an empty download: nothing to import (the store says so)
        number = 0
        top: ijson.ObjectBuilder | None = None
        nested: ijson.ObjectBuilder | None = None
        saw_context = False
        case = False  # the current value[] item has a Media array: it is a case
        try:
            for prefix, event, value in ijson.parse(data, use_float=True):
                if prefix in ("@odata.context", "odata.metadata"):
                    saw_context = True
                if prefix == NESTED and event == "start_map":
                    nested = ijson.ObjectBuilder()
                if nested is not None:
                    nested.event(event, value)
                    if prefix == NESTED and event == "end_map":
                        number += 1
                        yield from _media_records(nested.value, number)
                        nested = None
                    continue
                if prefix == "value.item.Media":
                    case = True
                    continue  # the Media array of a case: its items are handled above
                if prefix == TOP and event == "start_map":
                    top = ijson.ObjectBuilder()
                if top is not None:
                    top.event(event, value)
                    if prefix == TOP and event == "end_map":
                        obj: dict[str, Any] = top.value
                        top = None
                        if not case:
                            number += 1
                            yield from _media_records(obj, number)
                        case = False
        except ijson.JSONError as exc:
            raise ListFormatError(f"after Media #{number}", f"malformed JSON: {exc}") from exc
        if not saw_context:
            raise ListFormatError(
                "top level", "no @odata.context (2.0) or odata.metadata (1.x): not a VICS file"
            )


register("vics", VicsImporter)
