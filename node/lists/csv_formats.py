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

from protocol.hashes import HashFamily

from .base import (
    MAX_REJECTED_TEXT,
    ImportedRecord,
    ListFamily,
    ListFormatError,
    RejectedRecord,
    StoredFamily,
    family_alias,
    parse_record,
    register,
    text_stream,
)


def _rows(stream: BinaryIO | TextIO, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(text_stream(stream), delimiter=delimiter, strict=True)
    try:
        for row in reader:
            if row and any(cell.strip() for cell in row):
                yield reader.line_num, [cell.strip() for cell in row]
    except csv.Error as exc:
        raise ListFormatError(f"line {reader.line_num}", f"not valid CSV: {exc}") from exc


def _cell(row: list[str], i: int) -> str | None:
    return row[i] if i < len(row) and row[i] else None


@dataclass(frozen=True)
class CsvImporter:
    """``algorithm,value[,category[,label]]``; an optional header row is skipped.
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
            yield parse_record(family, row[1], line, _cell(row, 3), _cell(row, 2))


@dataclass(frozen=True)
class HmaImporter:
    """python-threatexchange / HMA dataset CSV: ``signal_type,signal_str,collab,category,tags``.
    The collaboration becomes the label, ``category`` the category."""

    algorithm: HashFamily | None = None
    name: str = "hma"

    def records(self, stream: BinaryIO | TextIO) -> Iterator[ImportedRecord | RejectedRecord]:
        for line, row in _rows(stream, ","):
            if line == 1 and row[0].lower() == "signal_type":
                continue
            family = self.algorithm or family_alias(row[0])
            if family is None or len(row) < 2:
                yield RejectedRecord(
                    line, ",".join(row)[:MAX_REJECTED_TEXT], f"unknown signal type {row[0]!r}"
                )
                continue
            yield parse_record(family, row[1], line, _cell(row, 2), _cell(row, 3))


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
                value = fields.get(column)
                if value:
                    found = True
                    yield parse_record(family, value, line, label, category)
            if not found:
                yield RejectedRecord(line, ";".join(row)[:MAX_REJECTED_TEXT], "no hash in row")


register("csv", CsvImporter)
register("hma", HmaImporter)
register("icse", IcseImporter)
