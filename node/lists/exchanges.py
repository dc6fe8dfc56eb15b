"""Saved JSON responses of two hash-exchange APIs: StopNCII ``FetchHashes`` (``stopncii``)
and the Tech Against Terrorism / TCAP hash list (``tcap``).

Neither publishes a file-format specification we could read; the structure here is the one
python-threatexchange's API clients (Meta, open source) read from those APIs:

- StopNCII: ``{"count", "nextPageToken", "nextSetTimestamp", "hasMoreRecords",
  "hashRecords": [{"signalType", "hashValue", "hashStatus", "caseNumbers",
  "lastModtimestamp", "CSPFeedbacks"}]}``; signal types ``ImagePDQ`` and ``VideoMD5``
  are hashes we hold (``VideoTMK``, ``Text``, ``URL`` are refused per record); a record
  with status ``Withdrawn`` or ``Deleted`` removes that value.
- TCAP: ``{"count", "next", "previous", "checkpoint", "results": [{"id", "hash_digest",
  "algorithm", "ideology", "file_type", "deleted", "created_on", "updated_on"}]}``;
  ``id`` is the label, ``ideology`` the category, ``file_type`` says image or video,
  ``deleted: true`` removes that value.

Each page of the API is one file (save every page and import them in order). Records
stream through ijson one at a time, like VICS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

import ijson  # type: ignore[import-untyped]

from node.lists.base import (
    MAX_REJECTED_TEXT,
    DeletedRecord,
    ListFamily,
    ListFormatError,
    Media,
    Record,
    RejectedRecord,
    content_stream,
    normalize_value,
    parse_record,
    register,
)
from protocol.hashes import HashFamily, InvalidHash

STOPNCII_SIGNALS: dict[str, tuple[ListFamily, Media]] = {
    "imagepdq": (HashFamily.PDQ, Media.IMAGE),
    "videomd5": (HashFamily.MD5, Media.VIDEO),
}
STOPNCII_GONE = frozenset({"withdrawn", "deleted"})
TCAP_ALGORITHMS: dict[str, ListFamily] = {
    "md5": HashFamily.MD5,
    "sha1": HashFamily.SHA1,
    "sha256": HashFamily.SHA256,
    "pdq": HashFamily.PDQ,
}
VIDEO_FILE_TYPES = frozenset({"mp4", "webm", "mov", "mkv", "avi", "wmv", "flv", "m4v", "3gp"})


def _items(stream: BinaryIO | TextIO, array: str, what: str) -> Iterator[tuple[int, Any]]:
    """(number, item) for each item of the top-level array ``array``; a file without that
    array is not this format (ListFormatError), an empty file holds nothing."""
    data = content_stream(stream)
    if data is None:
        return
    prefix = array + ".item"
    number = 0
    builder: ijson.ObjectBuilder | None = None
    seen = False
    try:
        for path, event, value in ijson.parse(data, use_float=True):
            if path == array and event == "start_array":
                seen = True
            if path == prefix and builder is None and event in ("start_map", "start_array"):
                builder = ijson.ObjectBuilder()
            if builder is not None:
                builder.event(event, value)
                if path == prefix and event in ("end_map", "end_array"):
                    number += 1
                    yield number, builder.value
                    builder = None
            elif path == prefix:  # a scalar item
                number += 1
                yield number, value
    except ijson.JSONError as exc:
        raise ListFormatError(f"after record #{number}", f"malformed JSON: {exc}") from exc
    if not seen:
        raise ListFormatError("top level", f"no {array!r} array: not {what}")


def _text(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _deleted(number: int, family: ListFamily, raw: str, label: str | None, media: Media) -> Record:
    try:
        value = normalize_value(family, raw)
    except InvalidHash as exc:
        return RejectedRecord(number, raw[:MAX_REJECTED_TEXT], str(exc))
    return DeletedRecord(number, label, media, family, value)


@dataclass(frozen=True)
class StopnciiImporter:
    algorithm: HashFamily | None = None  # every record names its signal type
    name: str = "stopncii"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[Record]:
        for number, item in _items(stream, "hashRecords", "a StopNCII FetchHashes response"):
            if not isinstance(item, dict):
                yield RejectedRecord(number, str(item)[:MAX_REJECTED_TEXT], "not an object")
                continue
            signal = _text(item, "signalType") or ""
            raw = _text(item, "hashValue")
            known = STOPNCII_SIGNALS.get(signal.lower())
            if known is None or raw is None:
                why = "no hashValue" if raw is None else f"signal type {signal!r} is not held"
                yield RejectedRecord(number, f"{signal} {raw or ''}"[:MAX_REJECTED_TEXT], why)
                continue
            family, media = known
            if (_text(item, "hashStatus") or "").lower() in STOPNCII_GONE:
                yield _deleted(number, family, raw, None, media)
            else:
                yield parse_record(family, raw, number, None, None, media)


@dataclass(frozen=True)
class TcapImporter:
    algorithm: HashFamily | None = None  # every record names its algorithm
    name: str = "tcap"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[Record]:
        for number, item in _items(stream, "results", "a TCAP hash list response"):
            if not isinstance(item, dict):
                yield RejectedRecord(number, str(item)[:MAX_REJECTED_TEXT], "not an object")
                continue
            algorithm = _text(item, "algorithm") or ""
            raw = _text(item, "hash_digest")
            family = TCAP_ALGORITHMS.get(algorithm.lower())
            if family is None or raw is None:
                why = "no hash_digest" if raw is None else f"algorithm {algorithm!r} is not held"
                yield RejectedRecord(number, f"{algorithm} {raw or ''}"[:MAX_REJECTED_TEXT], why)
                continue
            label = _text(item, "id")
            file_type = (_text(item, "file_type") or "").lower()
            media = Media.VIDEO if file_type in VIDEO_FILE_TYPES else Media.IMAGE
            if item.get("deleted") in (True, "true", "True"):
                yield _deleted(number, family, raw, label, media)
            else:
                category = _text(item, "ideology")
                yield parse_record(family, raw, number, label, category, media)


register("stopncii", StopnciiImporter)
register("tcap", TcapImporter)
