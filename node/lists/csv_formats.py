"""CSV list formats: generic ``csv``, the HMA/python-threatexchange dataset CSV (``hma``) and
INTERPOL ICSE exports (``icse``, semicolon-separated with a header).

Rows stream through the csv module in strict mode: a quoting error is a broken file
(ListFormatError with the line), a row with an unknown family or bad value is one rejected
record with its line number.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from node.lists.base import (
    MAX_REJECTED_TEXT,
    ImportedRecord,
    ListFamily,
    ListFormatError,
    Media,
    RejectedRecord,
    StoredFamily,
    family_alias,
    media_of_alias,
    parse_record,
    register,
    text_stream,
)
from protocol.hashes import HashFamily


def _rows(stream: BinaryIO | TextIO, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) per non-blank row; the line is where the row starts. Cells are as
    written: hash columns are stripped by the caller, labels are kept verbatim so that an
    exported label comes back exactly."""
    reader = csv.reader(text_stream(stream), delimiter=delimiter, strict=True)
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if row and any(cell.strip() for cell in row):
                yield line, [row[0].strip(), *row[1:]]
    except csv.Error as exc:
        raise ListFormatError(f"line {reader.line_num}", f"not valid CSV: {exc}") from exc


def _cell(row: list[str], i: int) -> str | None:
    """A label/category cell verbatim; empty means none."""
    return row[i] if i < len(row) and row[i] else None


def _hash(row: list[str], i: int) -> str:
    return row[i].strip() if i < len(row) else ""


@dataclass(frozen=True)
class CsvImporter:
    """``algorithm,value[,category[,label[,media]]]`` (what `list export --format csv`
    writes); an optional header row is skipped. ``media`` is ``image`` (default) or ``video``.
    A forced ``--algorithm`` makes the first column the value: ``value[,category[,label]]``."""

    algorithm: HashFamily | None = None
    name: str = "csv"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        for line, row in _rows(stream, ","):
            if line == 1 and row[0].lower() in ("algorithm", "value", "signal_type"):
                continue
            if self.algorithm is not None:
                yield parse_record(self.algorithm, row[0], line, _cell(row, 2), _cell(row, 1))
                continue
            family = family_alias(row[0])
            if family is None or len(row) < 2:
                yield RejectedRecord(
                    line, ",".join(row)[:MAX_REJECTED_TEXT], f"unknown algorithm {row[0]!r}"
                )
                continue
            media = Media.VIDEO if _hash(row, 4).lower() == "video" else media_of_alias(row[0])
            yield parse_record(family, _hash(row, 1), line, _cell(row, 3), _cell(row, 2), media)


# python-threatexchange signal types the node cannot hold yet, with the reason a row of
# them is refused (each row is refused on its own; the rest of the file is imported).
HMA_REFUSED = {
    "video_tmk_pdqf": "TMK+PDQF video hashes are not supported (no matcher for them)",
    "url": "url signals are not hashes: not importable into a hash list",
    "url_md5": "url_md5 signals hash URLs, not media: not importable into a hash list",
    "raw_text": "raw_text signals are not hashes: not importable into a hash list",
    "trend_query": "trend_query signals are not hashes: not importable into a hash list",
}


@dataclass(frozen=True)
class HmaImporter:
    """python-threatexchange / HMA dataset CSV: ``signal_type,signal_str,collab,category,tags``.
    The collaboration becomes the label, ``category`` the category. ``video_md5``,
    ``video_sha256`` and ``vpdq`` rows are stored as video entries; signal types the node
    cannot hold are refused row by row with the reason (HMA_REFUSED)."""

    algorithm: HashFamily | None = None
    name: str = "hma"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        for line, row in _rows(stream, ","):
            if line == 1 and row[0].lower() == "signal_type":
                continue
            signal = row[0].lower()
            text = ",".join(row)[:MAX_REJECTED_TEXT]
            if signal in HMA_REFUSED and self.algorithm is None:
                yield RejectedRecord(line, text, HMA_REFUSED[signal])
                continue
            family = self.algorithm or family_alias(signal)
            if family is None:
                yield RejectedRecord(line, text, f"unknown signal type {row[0]!r}")
                continue
            if len(row) < 2:
                yield RejectedRecord(line, text, "no signal_str column")
                continue
            yield parse_record(
                family, _hash(row, 1), line, _cell(row, 2), _cell(row, 3), media_of_alias(signal)
            )


ICSE_COLUMNS: dict[str, ListFamily] = {
    "md5": HashFamily.MD5,
    "sha1": HashFamily.SHA1,
    "sha256": HashFamily.SHA256,
    "photodna": StoredFamily.PHOTODNA,
    "pdq": HashFamily.PDQ,
}


@dataclass(frozen=True)
class IcseImporter:
    """INTERPOL ICSE CSV: semicolons, header ``MD5;SHA1;PhotoDNA;Image ID;...``. Every hash
    column of a row becomes one record labelled with the Image ID; a row with no hash is
    rejected."""

    algorithm: HashFamily | None = None
    name: str = "icse"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        header: list[str] | None = None
        for line, row in _rows(stream, ";"):
            if header is None:
                header = [cell.lower().replace(" ", "") for cell in row]
                if not any(name in ICSE_COLUMNS for name in header):
                    raise ListFormatError("line 1", "no MD5/SHA1/PhotoDNA column in the header")
                continue
            fields = dict(zip(header, row, strict=False))
            label = fields.get("imageid") or None
            category = fields.get("category") or None
            found = False
            for column, family in ICSE_COLUMNS.items():
                value = (fields.get(column) or "").strip()
                if value:
                    found = True
                    yield parse_record(family, value, line, label, category)
            if not found:
                yield RejectedRecord(line, ";".join(row)[:MAX_REJECTED_TEXT], "no hash in row")


register("csv", CsvImporter)
register("hma", HmaImporter)
register("icse", IcseImporter)
