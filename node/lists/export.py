"""Export the node's lists: VICS 2.0 hash sets (JSON), plain hex and CSV.

Written as a stream, entry by entry, so exporting millions of entries needs no more memory
than one batch of rows. VICS export groups entries that share a label (an ICSE Image ID, a
VICS MediaID) back into one Media; PhotoDNA is exported in base64 like VICS carries it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, TextIO

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..models import ListEntry

VICS_CONTEXT = (
    "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/CUSTOM/$metadata#Media"
)
VICS_FIELDS = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256"}
VICS_ALTERNATIVE = {"pdq": "PDQ", "phash": "pHash", "dhash": "dHash"}
EXPORT_FORMATS = ("vics", "plain", "csv")
BATCH = 5000


class ExportError(ValueError):
    """The export cannot be written as asked (e.g. plain without one family)."""


def _entries(engine: Engine, family: str | None, version_id: int | None) -> Iterator[ListEntry]:
    with Session(engine) as session:
        query = select(ListEntry).where(col(ListEntry.retired).is_(False))
        if family is not None:
            query = query.where(ListEntry.family == family)
        if version_id is not None:
            query = query.where(ListEntry.list_version_id == version_id)
        query = query.order_by(col(ListEntry.label), col(ListEntry.id))
        yield from session.exec(query.execution_options(yield_per=BATCH))


def _media(label: str | None, group: list[ListEntry], media_id: int) -> dict[str, Any]:
    media: dict[str, Any] = {"MediaID": label if label is not None else str(media_id)}
    alternative = []
    for entry in group:
        if entry.category and "Category" not in media:
            media["Category"] = int(entry.category) if entry.category.isdigit() else entry.category
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
    count = 0
    if format_name == "plain":
        for entry in _entries(engine, family, version_id):
            out.write(entry.value + "\n")
            count += 1
        return count
    if format_name == "csv":
        out.write("algorithm,value,category,label\n")
        for entry in _entries(engine, family, version_id):
            out.write(f"{entry.family},{entry.value},{entry.category or ''},{entry.label or ''}\n")
            count += 1
        return count
    out.write('{"@odata.context": ' + json.dumps(VICS_CONTEXT) + ', "value": [')
    first = True
    group: list[ListEntry] = []
    media_id = 0

    def flush() -> None:
        nonlocal first, media_id
        if not group:
            return
        media_id += 1
        out.write(("\n" if first else ",\n") + json.dumps(_media(group[0].label, group, media_id)))
        first = False

    for entry in _entries(engine, family, version_id):
        count += 1
        if group and (entry.label is None or entry.label != group[0].label):
            flush()
            group = []
        group.append(entry)
    flush()
    out.write("\n]}\n")
    return count
