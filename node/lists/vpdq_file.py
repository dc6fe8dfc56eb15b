"""The ``vpdq`` list format: one video's vPDQ hash per file (issue 13).

What `libra hash --vpdq-text VIDEO` prints and Meta's reference tool writes (one frame a line,
``frame_number,quality,pdq_hex,timestamp``), or a pytx/HMA ``vpdq`` signal string. The whole
file is one record (one listed video, no label); ``--category`` applies as for any format. A
file that is not a vPDQ hash is one rejected record with the reason; a file over MAX_FILE_BYTES
is refused whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from node.lists.base import (
    ImportedRecord,
    ListFormatError,
    Media,
    RejectedRecord,
    VideoFamily,
    parse_record,
    register,
    text_stream,
)
from protocol.hashes import HashFamily

# 7,200 frames of ~95 characters: a listed video's hash is never near this.
MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class VpdqImporter:
    algorithm: HashFamily | None = None  # the family is vPDQ; --algorithm does not apply
    name: str = "vpdq"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        chunks: list[str] = []
        size = 0
        for line in text_stream(stream):
            size += len(line)
            if size > MAX_FILE_BYTES:
                raise ListFormatError("whole file", f"larger than {MAX_FILE_BYTES} bytes")
            chunks.append(line)
        text = "".join(chunks)
        if not text.strip():
            return  # an empty file: nothing to import (the store says so)
        yield parse_record(VideoFamily.VPDQ, text, 1, None, None, Media.VIDEO)


def _factory(algorithm: HashFamily | None) -> VpdqImporter:
    return VpdqImporter(algorithm)


register("vpdq", _factory)
