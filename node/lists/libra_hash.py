"""The ``libra-hash`` list format: the JSON lines ``libra hash [--regions]`` prints.

How an agency builds its list from its own reference images (docs/robust-matching.md): each
line's ``hashes`` object gives one entry of the chosen family (``--algorithm``, default PDQ);
a PDQ entry keeps the line's ``pdq_regions`` as derived data, so that centred crops of the image
match (node.matching.matcher, method "region"). The list's own value is always the image's hash; the
region hashes are never exported. A line that ``libra hash`` marked as an error, that is not a
JSON object, or whose hash or region values are malformed is rejected with its line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from node.lists.base import MAX_REJECTED_TEXT, ImportedRecord, RejectedRecord, register, text_stream
from protocol.hashes import HashFamily, InvalidHash, normalize

MAX_REGIONS = 64  # as protocol.models.ImageHashes.pdq_regions


@dataclass(frozen=True)
class LibraHashImporter:
    algorithm: HashFamily | None = None
    name: str = "libra-hash"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        family = self.algorithm or HashFamily.PDQ
        for number, raw in enumerate(text_stream(stream), start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                yield self._record(family, text, number)
            except (InvalidHash, ValueError, TypeError) as exc:
                yield RejectedRecord(number, text[:MAX_REJECTED_TEXT], str(exc)[:200])

    @staticmethod
    def _record(family: HashFamily, text: str, number: int) -> ImportedRecord:
        line = json.loads(text)
        if not isinstance(line, dict):
            raise ValueError("not a JSON object")
        if "error" in line:
            raise ValueError("libra hash could not hash this file")
        hashes = line.get("hashes")
        if not isinstance(hashes, dict) or not isinstance(hashes.get(family.value), str):
            raise ValueError(f"no {family.value} value in 'hashes'")
        value = normalize(family, hashes[family.value])
        regions: tuple[str, ...] = ()
        if family is HashFamily.PDQ:
            listed = hashes.get("pdq_regions") or []
            if (
                not isinstance(listed, list)
                or len(listed) > MAX_REGIONS
                or not all(isinstance(v, str) for v in listed)
            ):
                raise ValueError(f"pdq_regions must be a list of at most {MAX_REGIONS} strings")
            regions = tuple(normalize(HashFamily.PDQ, v) for v in listed)
        return ImportedRecord(family, value, number, regions=regions)


def _factory(algorithm: HashFamily | None) -> LibraHashImporter:
    return LibraHashImporter(algorithm)


register("libra-hash", _factory)
