"""Saved StopNCII FetchHashes and TCAP hash-list API responses (structure as read by
python-threatexchange's clients): values, video records, refusals and deletions."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node.lists import (
    DeletedRecord,
    ImportedRecord,
    ListFormatError,
    Media,
    RejectedRecord,
    get_importer,
    import_list,
    list_versions,
)
from node.models import ListEntry
from protocol.hashes import HashFamily

FIXTURES = Path(__file__).parent / "fixtures" / "lists"
EXPECTED: list[dict[str, str]] = json.loads((FIXTURES / "expected.json").read_text())


def stopncii(records: list[dict[str, Any]]) -> bytes:
    page = {
        "count": len(records),
        "nextPageToken": "t",
        "nextSetTimestamp": 1733300000,
        "hasMoreRecords": False,
        "hashRecords": records,
    }
    return json.dumps(page).encode()


def ncii(signal: str, value: str, status: str = "Active") -> dict[str, Any]:
    return {
        "lastModtimestamp": 1733300000,
        "signalType": signal,
        "hashValue": value,
        "hashStatus": status,
        "caseNumbers": {"case-1": status},
        "CSPFeedbacks": [],
    }


def tcap(results: list[dict[str, Any]]) -> bytes:
    page = {"count": len(results), "next": None, "previous": None, "checkpoint": "1,2"}
    return json.dumps({**page, "results": results}).encode()


def tat(
    n: int, algorithm: str, value: str, file_type: str = "png", deleted: bool = False
) -> dict[str, Any]:
    return {
        "id": 2800 + n,
        "hash_digest": value,
        "algorithm": algorithm,
        "ideology": "far-right",
        "file_type": file_type,
        "deleted": deleted,
        "created_on": "2026-11-24 10:00:00,000",
        "updated_on": 1733300000.5,
    }


def test_stopncii_records() -> None:
    data = stopncii(
        [
            ncii("ImagePDQ", EXPECTED[0]["pdq"].upper()),
            ncii("VideoMD5", EXPECTED[1]["md5"]),
            ncii("VideoTMK", "00ff"),
            ncii("ImagePDQ", EXPECTED[2]["pdq"], "Withdrawn"),
        ]
    )
    out = list(get_importer("stopncii").records(io.BytesIO(data)))
    assert out[0] == ImportedRecord(HashFamily.PDQ, EXPECTED[0]["pdq"], 1)
    assert out[1] == ImportedRecord(HashFamily.MD5, EXPECTED[1]["md5"], 2, media=Media.VIDEO)
    assert isinstance(out[2], RejectedRecord) and "'VideoTMK' is not held" in out[2].reason
    assert out[3] == DeletedRecord(4, None, Media.IMAGE, HashFamily.PDQ, EXPECTED[2]["pdq"])


def test_tcap_records() -> None:
    data = tcap(
        [
            tat(1, "MD5", EXPECTED[0]["md5"], "mp4"),
            tat(2, "PDQ", EXPECTED[1]["pdq"]),
            tat(3, "TMK", "ab"),
            tat(4, "MD5", EXPECTED[2]["md5"], deleted=True),
        ]
    )
    out = list(get_importer("tcap").records(io.BytesIO(data)))
    assert out[0] == ImportedRecord(
        HashFamily.MD5, EXPECTED[0]["md5"], 1, "2801", "far-right", Media.VIDEO
    )
    assert out[1] == ImportedRecord(HashFamily.PDQ, EXPECTED[1]["pdq"], 2, "2802", "far-right")
    assert isinstance(out[2], RejectedRecord) and "'TMK' is not held" in out[2].reason
    assert out[3] == DeletedRecord(4, "2804", Media.IMAGE, HashFamily.MD5, EXPECTED[2]["md5"])


@pytest.mark.parametrize("format_name", ["stopncii", "tcap"])
def test_other_json_is_not_this_format(format_name: str) -> None:
    with pytest.raises(ListFormatError, match="not a"):
        list(get_importer(format_name).records(io.BytesIO(b'{"value": []}')))


def test_withdrawals_remove_only_values_held_by_that_format(engine: Engine) -> None:
    """A value is held once, by the version that brought it first (unique family+value);
    a StopNCII withdrawal removes values held by StopNCII imports, not a TCAP-held one."""
    pdq = [EXPECTED[n]["pdq"] for n in range(3)]
    other = tcap([tat(9, "PDQ", pdq[1])])
    import_list(engine, get_importer("tcap"), io.BytesIO(other), source="t", version="1")
    first = stopncii([ncii("ImagePDQ", v) for v in pdq])
    summary = import_list(
        engine, get_importer("stopncii"), io.BytesIO(first), source="s1", version="1"
    )
    assert (summary.imported, summary.duplicates) == (2, 1)
    gone = stopncii([ncii("ImagePDQ", pdq[0], "Deleted"), ncii("ImagePDQ", pdq[1], "Withdrawn")])
    second = import_list(
        engine, get_importer("stopncii"), io.BytesIO(gone), source="s2", version="2"
    )
    assert (second.withdrawn, second.imported) == (1, 0)
    with Session(engine) as session:
        left = {e.value for e in session.exec(select(ListEntry)).all()}
    assert left == {pdq[1], pdq[2]}
    assert [v.withdrawn for v in list_versions(engine)] == [0, 0, 1]
