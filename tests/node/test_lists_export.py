"""Exports are faithful (issue 12): VICS 2.0 keeps every value in one Media per source
record and validates against the VICS 2.0 Media fields; CSV quotes, so labels survive."""

from __future__ import annotations

import io
import json
import random
from itertools import count
from typing import Any

import jsonschema_rs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from node.lists import (
    ImportedRecord,
    Media,
    Record,
    get_importer,
    import_list,
    import_records,
)
from node.lists.export import export
from protocol.hashes import HashFamily
from tests.node.conftest import rand_hex

HEX = {"pattern": "^[0-9A-F]+$", "type": "string"}
# The VICS 2.0 Media fields this exporter writes (Project VIC data model 2.0: MediaID and
# Category are strings, IsPrecategorized a boolean; every hash field is optional, but a
# Media carries at least one hash).
VICS2_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["@odata.context", "value"],
    "properties": {
        "@odata.context": {"type": "string", "pattern": "/2\\.0\\.xml/.*\\$metadata#Media$"},
        "value": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["MediaID", "IsPrecategorized"],
                "additionalProperties": False,
                "properties": {
                    "MediaID": {"type": "string", "minLength": 1},
                    "Category": {"type": "string"},
                    "IsPrecategorized": {"type": "boolean"},
                    "MD5": {**HEX, "minLength": 32, "maxLength": 32},
                    "SHA1": {**HEX, "minLength": 40, "maxLength": 40},
                    "SHA256": {**HEX, "minLength": 64, "maxLength": 64},
                    "PhotoDNA": {"type": "string", "contentEncoding": "base64"},
                    "AlternativeHashes": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["HashName", "HashValue"],
                            "properties": {
                                "HashName": {"enum": ["PDQ", "pHash", "dHash"]},
                                "HashValue": {"type": "string", "pattern": "^[0-9a-f]+$"},
                            },
                        },
                    },
                },
                "anyOf": [
                    {"required": [name]}
                    for name in ("MD5", "SHA1", "SHA256", "PhotoDNA", "AlternativeHashes")
                ],
            },
        },
    },
}
VALIDATOR = jsonschema_rs.validator_for(VICS2_SCHEMA)


def errors(document: object) -> list[str]:
    return [str(e) for e in VALIDATOR.iter_errors(document)]


def test_the_schema_rejects_what_the_old_export_wrote() -> None:
    """The validator is not vacuous: integer ids/categories and a missing flag fail."""
    old = {
        "@odata.context": "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/"
        "CUSTOM/$metadata#Media",
        "value": [{"MediaID": 1, "Category": 2, "MD5": "AB" * 16}, {"MediaID": "x"}],
    }
    found = errors(old)
    assert any("1 is not of type" in e for e in found)
    assert any("2 is not of type" in e for e in found)
    assert any("IsPrecategorized" in e for e in found)
    assert len(found) >= 4  # the second Media has no hash at all


def nsrl_like_vics(rng: random.Random) -> tuple[bytes, set[tuple[str, str]]]:
    """A VICS 2.0 file shaped like an NSRL CAID export: 120 Media sharing 16 MediaIDs,
    100 with MD5 and SHA-1, 20 with SHA-1 only: 220 distinct values."""
    media: list[dict[str, Any]] = []
    values: set[tuple[str, str]] = set()
    for n in range(120):
        item: dict[str, Any] = {
            "MediaID": f"case-{n % 16}",
            "Category": str(n % 4),
            "IsPrecategorized": True,
            "SHA1": rand_hex(rng, 160).upper(),
        }
        values.add(("sha1", item["SHA1"].lower()))
        if n < 100:
            item["MD5"] = rand_hex(rng, 128).upper()
            values.add(("md5", item["MD5"].lower()))
        media.append(item)
    context = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/CUSTOM/$metadata"
    document = {"@odata.context": context + "#Media", "value": media}
    return json.dumps(document).encode(), values


def test_vics_round_trip_keeps_every_value_in_its_own_media(engine: Engine) -> None:
    data, values = nsrl_like_vics(random.Random(220))
    assert len(values) == 220
    summary = import_list(
        engine, get_importer("vics"), io.BytesIO(data), source="caid", version="1"
    )
    assert summary.imported == 220
    out = io.StringIO()
    assert export(engine, out, "vics") == 220
    document = json.loads(out.getvalue())
    assert errors(document) == []
    assert len(document["value"]) == 120  # one Media per source Media, none merged by label
    assert sum(1 for m in document["value"] if "MD5" not in m) == 20
    back = list(get_importer("vics").records(io.BytesIO(out.getvalue().encode())))
    assert {(r.family.value, r.value) for r in back if isinstance(r, ImportedRecord)} == values
    # Each value is still paired with the same MediaID and Category as in the source.
    source = json.loads(data)["value"]
    exported = {m["SHA1"]: (m["MediaID"], m["Category"], m.get("MD5")) for m in document["value"]}
    assert exported == {m["SHA1"]: (m["MediaID"], m["Category"], m.get("MD5")) for m in source}


def test_vics_export_of_line_formats_and_uncategorised_entries(engine: Engine) -> None:
    rng = random.Random(3)
    md5, pdq = rand_hex(rng, 128), rand_hex(rng, 256)
    text = f"algorithm,value,category,label\nmd5,{md5},,x\npdq,{pdq},,x\n"
    import_list(engine, get_importer("csv"), io.StringIO(text), source="c", version="1")
    out = io.StringIO()
    export(engine, out, "vics")
    document = json.loads(out.getvalue())
    assert errors(document) == []
    assert document["value"] == [  # two lines are two records: not merged by their label
        {"MediaID": "x", "IsPrecategorized": False, "MD5": md5.upper()},
        {
            "MediaID": "x",
            "IsPrecategorized": False,
            "AlternativeHashes": [{"HashName": "PDQ", "HashValue": pdq}],
        },
    ]


def test_csv_export_quotes_labels(engine: Engine) -> None:
    label = 'Case 7, batch "A"'
    assert _csv_round_trip(label, engine) == label


_fresh = count(1)  # a new value per example: the property tests share one database


def _csv_round_trip(label: str, engine: Engine) -> str | None:
    value = f"{next(_fresh):032x}"
    records: list[Record] = [ImportedRecord(HashFamily.MD5, value, 1, label, "cat, 1")]
    version = import_records(engine, records, source="p", version="1", format_name="csv")
    out = io.StringIO()
    export(engine, out, "csv", version_id=version.list_version_id)
    (back,) = [
        r
        for r in get_importer("csv").records(io.StringIO(out.getvalue()))
        if isinstance(r, ImportedRecord)
    ]
    assert (back.value, back.category) == (value, "cat, 1")
    return back.label


def _vics_round_trip(label: str, engine: Engine) -> str | None:
    value = f"{next(_fresh):040x}"
    records: list[Record] = [ImportedRecord(HashFamily.SHA1, value, 1, label)]
    version = import_records(engine, records, source="p", version="1", format_name="vics")
    out = io.StringIO()
    export(engine, out, "vics", version_id=version.list_version_id)
    assert errors(json.loads(out.getvalue())) == []
    (back,) = list(get_importer("vics").records(io.BytesIO(out.getvalue().encode())))
    assert isinstance(back, ImportedRecord) and back.value == value
    return back.label


LABELS = st.text(min_size=1, max_size=40)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(label=LABELS)
def test_any_label_round_trips_through_every_labelled_export(engine: Engine, label: str) -> None:
    """CSV and VICS carry labels: whatever text a label holds (commas, quotes, line
    breaks, white space, non-Latin scripts) comes back exactly."""
    assert _csv_round_trip(label, engine) == label
    assert _vics_round_trip(label, engine) == label


def test_csv_export_keeps_video_entries_video(engine: Engine) -> None:
    value = rand_hex(random.Random(4), 256)
    records: list[Record] = [ImportedRecord(HashFamily.SHA256, value, 1, media=Media.VIDEO)]
    import_records(engine, records, source="v", version="1", format_name="hma")
    out = io.StringIO()
    export(engine, out, "csv")
    assert out.getvalue().splitlines()[1] == f"sha256,{value},,,video"
    (back,) = list(get_importer("csv").records(io.StringIO(out.getvalue())))
    assert isinstance(back, ImportedRecord) and back.media is Media.VIDEO
