"""Every list format against fixtures made from benign generated images."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.lists import (
    ImportedRecord,
    ListFormatError,
    Record,
    RejectedRecord,
    StoredFamily,
    formats,
    get_importer,
)
from protocol.hashes import HashFamily

FIXTURES = Path(__file__).parent / "fixtures" / "lists"
EXPECTED: list[dict[str, str]] = json.loads((FIXTURES / "expected.json").read_text())


def read(format_name: str, name: str, algorithm: HashFamily | None = None) -> list[Record]:
    with (FIXTURES / name).open("rb") as stream:
        return list(get_importer(format_name, algorithm).records(stream))


def good(records: list[Record]) -> list[ImportedRecord]:
    return [r for r in records if isinstance(r, ImportedRecord)]


def bad(records: list[Record]) -> list[RejectedRecord]:
    return [r for r in records if isinstance(r, RejectedRecord)]


def values(records: list[Record], family: str) -> list[str]:
    return [r.value for r in good(records) if r.family.value == family]


def test_all_formats_registered() -> None:
    assert set(formats()) >= {"plain", "csv", "hma", "vics", "icse", "ncmec"}


def test_plain_upper_case_md5() -> None:
    out = read("plain", "plain_md5.txt")
    assert values(out, "md5") == [i["md5"] for i in EXPECTED]
    assert not bad(out)


def test_csv_with_header_categories_labels_and_bad_rows() -> None:
    out = read("csv", "list.csv")
    assert values(out, "pdq") == [i["pdq"] for i in EXPECTED]
    assert values(out, "sha256") == [i["sha256"] for i in EXPECTED]
    first = good(out)[0]
    assert (first.category, first.label, first.line) == ("1", "img0", 2)
    rejected = bad(out)
    assert [r.line for r in rejected] == [14, 15]
    assert "unknown algorithm" in rejected[1].reason


def test_hma_dataset_csv() -> None:
    out = read("hma", "hma.csv")
    assert values(out, "pdq") == [i["pdq"] for i in EXPECTED]
    assert values(out, "md5") == [i["md5"] for i in EXPECTED[:2]]  # video_md5
    assert good(out)[0].label == "test-collab" and good(out)[0].category == "adult"
    assert [r.line for r in bad(out)] == [10]


def test_vics_1x_with_bom_string_booleans_and_a_media_without_hashes() -> None:
    out = read("vics", "vics1.json")
    assert values(out, "md5") == [i["md5"] for i in EXPECTED[:3]]  # upper-case hex accepted
    assert values(out, "pdq") == [i["pdq"] for i in EXPECTED[:3]]
    assert values(out, "photodna") == [i["photodna_hex"] for i in EXPECTED[:3]]
    (missing,) = bad(out)
    assert missing.line == 4 and "no usable hash" in missing.reason


def test_vics_2_case_export_streams_nested_media() -> None:
    out = read("vics", "vics2_case.json")
    assert values(out, "sha1") == [i["sha1"] for i in EXPECTED]
    assert values(out, "pdq") == [i["pdq"] for i in EXPECTED]
    assert {r.label for r in good(out)} == {str(n + 1) for n in range(len(EXPECTED))}
    assert not bad(out)


def test_vics_broken_file_says_where() -> None:
    with pytest.raises(ListFormatError) as info:
        read("vics", "vics2_broken.json")
    assert "Media #" in info.value.where


def test_vics_without_context_is_not_vics() -> None:
    with pytest.raises(ListFormatError, match="not a VICS file"):
        list(get_importer("vics").records(io.BytesIO(b'{"value": []}')))


def test_icse_semicolon_csv() -> None:
    out = read("icse", "icse.csv")
    assert values(out, "md5") == [i["md5"] for i in EXPECTED]
    assert values(out, "sha1") == [i["sha1"] for i in EXPECTED]  # upper-case accepted
    assert values(out, "photodna") == [i["photodna_hex"] for i in EXPECTED]
    assert good(out)[0].label == "ICSE-0"
    (empty,) = bad(out)
    assert empty.line == 8 and empty.reason == "no hash in row"


def test_icse_without_hash_columns_is_broken() -> None:
    with pytest.raises(ListFormatError, match="line 1"):
        list(get_importer("icse").records(io.BytesIO(b"Foo;Bar\n1;2\n")))


def test_ncmec_xml_images_and_videos() -> None:
    out = read("ncmec", "ncmec.xml")
    assert values(out, "md5") == [i["md5"] for i in EXPECTED]
    assert values(out, "pdq") == [i["pdq"] for n, i in enumerate(EXPECTED) if n % 2 == 0]
    assert values(out, "photodna") == [i["photodna_hex"] for i in EXPECTED]
    assert good(out)[0].label == "N-0"
    (rejected,) = bad(out)
    assert rejected.line == len(EXPECTED) + 1


def test_ncmec_broken_xml_reports_line_and_column() -> None:
    with pytest.raises(ListFormatError) as info:
        read("ncmec", "ncmec_broken.xml")
    assert info.value.where.startswith("line ")


def test_ncmec_refuses_entity_expansion() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        b"<hashList><image><fingerprints><md5>&a;</md5></fingerprints></image></hashList>"
    )
    with pytest.raises(ListFormatError):
        list(get_importer("ncmec").records(io.BytesIO(bomb)))


def test_photodna_is_stored_family_not_a_matching_family() -> None:
    out = read("icse", "icse.csv")
    pdna = [r for r in good(out) if r.family is StoredFamily.PHOTODNA]
    assert pdna and all(not isinstance(r.family, HashFamily) for r in pdna)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_never_escapes_as_an_unexpected_error(blob: bytes) -> None:
    """Any input: records, rejections, or one ListFormatError; nothing else."""
    for name in formats():
        importer = get_importer(name, HashFamily.MD5 if name == "plain" else None)
        with contextlib.suppress(ListFormatError):
            list(importer.records(io.BytesIO(blob)))
