"""Export the node's lists: VICS 2.0 hash sets (JSON), plain hex and CSV.

Written as a stream, entry by entry, so exporting millions of entries needs no more memory
than one batch of rows. VICS export writes one Media per source record (the values of one
imported VICS Media, NCMEC entry or ICSE row; one hash per Media for line formats), never
merging records that merely share a label; PhotoDNA is exported in base64 like VICS carries
it. CSV export goes through the csv module, so any label survives the round trip.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.models import ListEntry

VICS_CONTEXT = (
    "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/CUSTOM/$metadata#Media"
)
VICS_FIELDS = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256"}
# vPDQ travels as its pytx signal string (what HMA exchanges); family_alias reads it back.
VICS_ALTERNATIVE = {"pdq": "PDQ", "phash": "pHash", "dhash": "dHash", "vpdq": "vPDQ"}
EXPORT_FORMATS = ("vics", "plain", "csv")
CSV_HEADER = ("algorithm", "value", "category", "label", "media")
BATCH = 5000


class ExportError(ValueError):
    """The export cannot be written as asked (e.g. plain without one family)."""


def _entries(
    engine: Engine, family: str | None, version_id: int | None, by_record: bool
) -> Iterator[ListEntry]:
    with Session(engine) as session:
        query = select(ListEntry).where(col(ListEntry.retired).is_(False))
        if family is not None:
            query = query.where(ListEntry.family == family)
        if version_id is not None:
            query = query.where(ListEntry.list_version_id == version_id)
        if by_record:  # the values of one source record come out next to each other
            query = query.order_by(
                col(ListEntry.list_version_id), col(ListEntry.record), col(ListEntry.id)
            )
        else:
            query = query.order_by(col(ListEntry.id))
        yield from session.exec(query.execution_options(yield_per=BATCH))


def _vics_key(entry: ListEntry) -> tuple[int, int] | None:
    """Entries with the same key came from one source record; None: a record of its own
    (entries stored before records were kept)."""
    if entry.record is None:
        return None
    return (entry.list_version_id, entry.record)


def _field(entry: ListEntry) -> str:
    """The Media field ``entry`` fills (AlternativeHashes by hash name)."""
    if entry.family in VICS_FIELDS:
        return VICS_FIELDS[entry.family]
    if entry.family == "photodna":
        return "PhotoDNA"
    return "AlternativeHashes:" + VICS_ALTERNATIVE.get(entry.family, entry.family)


def _media(group: list[ListEntry], media_id: int) -> dict[str, Any]:
    """One VICS 2.0 Media: MediaID and Category as strings, IsPrecategorized always
    present, only the hash fields that exist (a Media without MD5 is valid)."""
    first = group[0]
    category = next((e.category for e in group if e.category is not None), None)
    media: dict[str, Any] = {
        "MediaID": first.label if first.label is not None else str(media_id),
        "IsPrecategorized": category is not None,
    }
    if category is not None:
        media["Category"] = category
    alternative = []
    for entry in group:
        if entry.family in VICS_FIELDS:
            media[VICS_FIELDS[entry.family]] = entry.value.upper()
        elif entry.family == "photodna":
            media["PhotoDNA"] = base64.b64encode(bytes.fromhex(entry.value)).decode()
        elif entry.family in VICS_ALTERNATIVE:
            alternative.append(
                {"HashName": VICS_ALTERNATIVE[entry.family], "HashValue": entry.value}
            )
    if alternative:
        media["AlternativeHashes"] = alternative
    return media


def _write_vics(out: TextIO, entries: Iterable[ListEntry]) -> int:
    """One Media per source record; a new Media whenever the record changes or a hash
    field would be filled twice, so no value is ever dropped or merged by label."""
    out.write('{"@odata.context": ' + json.dumps(VICS_CONTEXT) + ', "value": [')
    count = 0
    media_id = 0
    group: list[ListEntry] = []
    fields: set[str] = set()

    def flush() -> None:
        nonlocal media_id
        if group:
            media_id += 1
            separator = "\n" if media_id == 1 else ",\n"
            out.write(separator + json.dumps(_media(group, media_id)))

    for entry in entries:
        count += 1
        key, name = _vics_key(entry), _field(entry)
        if group and (key is None or key != _vics_key(group[0]) or name in fields):
            flush()
            group, fields = [], set()
        group.append(entry)
        fields.add(name)
    flush()
    out.write("\n]}\n")
    return count


def export(
    engine: Engine,
    out: TextIO,
    format_name: str,
    *,
    family: str | None = None,
    version_id: int | None = None,
) -> int:
    """Write the entries to ``out``; returns how many entries were written."""
    if format_name not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format_name!r} (known: vics, plain, csv)")
    if format_name == "plain" and family is None:
        raise ExportError("plain export holds one family per file: pass --algorithm")
    entries = _entries(engine, family, version_id, by_record=format_name == "vics")
    count = 0
    if format_name == "plain":
        for entry in entries:
            out.write(entry.value + "\n")
            count += 1
        return count
    if format_name == "csv":
        # The csv module quotes labels with commas, quotes or line breaks (RFC 4180), so
        # the csv importer reads back exactly what was stored.
        writer = csv.writer(out)  # RFC 4180: CRLF rows, so a CR in a label is quoted too
        writer.writerow(CSV_HEADER)
        for entry in entries:
            writer.writerow(
                [entry.family, entry.value, entry.category or "", entry.label or "", entry.media]
            )
            count += 1
        return count
    return _write_vics(out, entries)
