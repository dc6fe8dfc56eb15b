"""Property tests: every list parser, fed structured but arbitrary input (NCMEC-like XML,
VICS-like JSON, CSV of arbitrary cells), yields only records or raises ListFormatError
(the documented import error). Bounded to run in seconds."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from hypothesis import given, settings
from hypothesis import strategies as st

from node.lists import (
    DeletedRecord,
    ImportedRecord,
    ListFormatError,
    RejectedRecord,
    get_importer,
)

RECORD_TYPES = (ImportedRecord, RejectedRecord, DeletedRecord)
TAGS = [
    "queryResult",
    "images",
    "videos",
    "image",
    "video",
    "deletedImage",
    "deletedVideo",
    "id",
    "classification",
    "fingerprints",
    "md5",
    "sha1",
    "pdq",
    "pdna",
    "status",
    "member",
]
HEXISH = st.text(alphabet="0123456789abcdefABCDEFxz+/=, ", max_size=70)
TEXT = st.one_of(HEXISH, st.text(max_size=20))


def parse_all(format_name: str, data: bytes) -> None:
    with contextlib.suppress(ListFormatError):
        for record in get_importer(format_name).records(io.BytesIO(data)):
            assert isinstance(record, RECORD_TYPES)


@st.composite
def xml_trees(draw: st.DrawFn) -> bytes:
    namespace = draw(st.sampled_from(["", "{https://hashsharing.ncmec.org/hashsharing/v2}"]))
    root = Element(namespace + draw(st.sampled_from(["queryResult", "status", "hashList"])))
    open_nodes = [root]
    for _ in range(draw(st.integers(0, 25))):
        parent = draw(st.sampled_from(open_nodes))
        child = SubElement(parent, namespace + draw(st.sampled_from(TAGS)))
        child.text = draw(st.none() | TEXT)
        for attribute in draw(st.lists(st.sampled_from(["id", "willdelete", "deleted"]))):
            child.set(attribute, draw(st.sampled_from(["true", "false", "1", ""]) | TEXT))
        open_nodes.append(child)
    document: bytes = tostring(root, encoding="utf-8")
    return document


@settings(max_examples=150, deadline=None)
@given(xml_trees(), st.integers(0, 4000))
def test_ncmec_parser_on_arbitrary_xml(document: bytes, cut: int) -> None:
    parse_all("ncmec", document)
    parse_all("ncmec", document[:cut])  # truncated downloads too


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
MEDIA = st.dictionaries(
    st.sampled_from(
        ["MediaID", "Category", "MD5", "SHA1", "SHA256", "PhotoDNA", "AlternativeHashes", "Media"]
    ),
    JSON
    | HEXISH
    | st.lists(
        st.fixed_dictionaries({"HashName": st.sampled_from(["PDQ", "x"]), "HashValue": JSON})
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["@odata.context", "odata.metadata", "other"]),
    st.lists(MEDIA | JSON, max_size=6),
    st.integers(0, 3000),
)
def test_vics_parser_on_arbitrary_json(context: str, value: list[Any], cut: int) -> None:
    document = json.dumps({context: "x#Media", "value": value}).encode()
    parse_all("vics", document)
    parse_all("vics", document[:cut])


EXCHANGE_FIELDS = ["signalType", "hashValue", "hashStatus", "hash_digest", "algorithm", "id"]
EXCHANGE_ITEM = st.dictionaries(
    st.sampled_from([*EXCHANGE_FIELDS, "deleted", "file_type", "ideology"]),
    JSON | HEXISH | st.sampled_from(["ImagePDQ", "VideoMD5", "Withdrawn", "PDQ", "MD5", "mp4"]),
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["hashRecords", "results", "value"]),
    st.lists(EXCHANGE_ITEM | JSON, max_size=6),
    st.integers(0, 3000),
)
def test_exchange_parsers_on_arbitrary_json(array: str, items: list[Any], cut: int) -> None:
    document = json.dumps({"count": len(items), array: items}).encode()
    for format_name in ("stopncii", "tcap"):
        parse_all(format_name, document)
        parse_all(format_name, document[:cut])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(TEXT, st.sampled_from(["md5", "video_sha256", "vpdq"])), max_size=6),
        max_size=8,
    )
)
def test_csv_parsers_on_arbitrary_cells(rows: list[list[str]]) -> None:
    for delimiter, formats in ((",", ("csv", "hma", "plain")), (";", ("icse",))):
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter).writerows(rows)
        for format_name in formats:
            parse_all(format_name, out.getvalue().encode())


def test_photodna_with_non_ascii_text_is_a_rejected_record() -> None:
    """Found by test_ncmec_parser_on_arbitrary_xml: base64 of non-ASCII text raised
    ValueError out of the parser instead of rejecting the record."""
    xml = "<hashList><image id='x'><pdna>\u0080</pdna></image></hashList>".encode()
    (only,) = list(get_importer("ncmec").records(io.BytesIO(xml)))
    assert isinstance(only, RejectedRecord) and "photodna" in only.reason
