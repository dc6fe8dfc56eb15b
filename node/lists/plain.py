"""The ``plain`` list format: one hash per line.

The family comes from the value's length (protocol.hashes.family_from_length) unless forced
with ``--algorithm``; 64 and 16 hex digits are ambiguous and rejected without it. Blank lines
and ``#`` comments (whole-line or trailing) are ignored. A line that is not a hash is rejected
with its line number; the other lines are still imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from node.lists.base import MAX_REJECTED_TEXT, ImportedRecord, RejectedRecord, register, text_stream
from protocol.hashes import HashFamily, InvalidHash, family_from_length, normalize


@dataclass(frozen=True)
class PlainImporter:
    algorithm: HashFamily | None = None
    name: str = "plain"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        for number, raw in enumerate(text_stream(stream), start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                family = self.algorithm or family_from_length(text)
                value = normalize(family, text)
            except InvalidHash as exc:
                yield RejectedRecord(number, text[:MAX_REJECTED_TEXT], str(exc))
                continue
            yield ImportedRecord(family, value, number)


def _factory(algorithm: HashFamily | None) -> PlainImporter:
    return PlainImporter(algorithm)


register("plain", _factory)
