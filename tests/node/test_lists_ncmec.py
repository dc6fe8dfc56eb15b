"""NCMEC hash-sharing XML as the v2 API writes it: namespaced, ids and classifications,
deletions and re-classifications applied to the lists already held (issue 12)."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.lists import (
    DeletedRecord,
    ImportedRecord,
    Media,
    NothingToImport,
    Record,
    RejectedRecord,
    get_importer,
    import_list,
    list_versions,
)
from node.models import AnalysedImage, CrawlCycle, ListEntry

FIXTURES = Path(__file__).parent / "fixtures" / "lists"
EXPECTED: list[dict[str, str]] = json.loads((FIXTURES / "expected.json").read_text())
NS = "https://hashsharing.ncmec.org/hashsharing/v2"


def read(name: str) -> list[Record]:
    with (FIXTURES / name).open("rb") as stream:
        return list(get_importer("ncmec").records(stream))


def load(engine: Engine, name: str) -> int:
    with (FIXTURES / name).open("rb") as stream:
        return import_list(
            engine, get_importer("ncmec"), stream, source=name, version="1"
        ).list_version_id


def held(engine: Engine) -> dict[tuple[str, str], ListEntry]:
    with Session(engine) as session:
        rows = session.exec(select(ListEntry).where(col(ListEntry.retired).is_(False))).all()
    return {(e.family, e.value): e for e in rows}


def test_namespaced_document_keeps_ids_classifications_and_media() -> None:
    out = read("ncmec_v2.xml")
    imported = [r for r in out if isinstance(r, ImportedRecord)]
    assert [r.value for r in imported if r.family.value == "md5"] == [
        i["md5"] for i in EXPECTED[:5]
    ]
    first = imported[0]
    assert (first.label, first.category, first.media, first.updates) == (
        "I-0",
        "A1",
        Media.IMAGE,
        True,
    )
    assert {r.label: r.category for r in imported} == {
        "I-0": "A1",
        "I-1": "B1",
        "I-2": "A1",
        "V-3": "A1",
        "V-4": "A1",
    }
    assert {r.media for r in imported if r.label and r.label.startswith("V-")} == {Media.VIDEO}
    assert [r for r in out if isinstance(r, DeletedRecord)] == [
        DeletedRecord(4, "never-seen", Media.IMAGE)
    ]
    assert not [r for r in out if isinstance(r, RejectedRecord)]


def test_older_files_with_id_attributes_and_willdelete() -> None:
    xml = (
        f'<hashList xmlns="{NS}"><image id="a"><fingerprints><md5>{EXPECTED[0]["md5"]}</md5>'
        '</fingerprints></image><image id="b" willdelete="true"/><video willdelete="true"/>'
        "</hashList>"
    ).encode()
    out = list(get_importer("ncmec").records(io.BytesIO(xml)))
    assert isinstance(out[0], ImportedRecord) and out[0].label == "a"
    assert out[1] == DeletedRecord(2, "b", Media.IMAGE)
    assert isinstance(out[2], RejectedRecord) and out[2].reason == "deletion without an id"


def test_update_reclassifies_and_withdraws_entries_already_held(engine: Engine) -> None:
    first = load(engine, "ncmec_v2.xml")
    before = held(engine)
    assert len(before) == 3 * 4 + 2 * 2  # images: md5, sha1, pdna, pdq; videos: md5, sha1
    assert before[("md5", EXPECTED[3]["md5"])].media == "video"
    # An analysed image refers to one of I-1's entries: it is retired, not deleted.
    referenced = before[("sha1", EXPECTED[1]["sha1"])].id
    with Session(engine) as session, session.begin():
        cycle = CrawlCycle()
        session.add(cycle)
        session.flush()
        assert cycle.id is not None
        session.add(AnalysedImage(cycle_id=cycle.id, url="u", final_url="u", entry_id=referenced))

    second = load(engine, "ncmec_v2_update.xml")
    after = held(engine)
    # I-0: same four values, now A2. I-1 (image) and V-3 (video) are gone. I-5 is new.
    assert {after[(f, EXPECTED[0][k])].category for f, k in (("md5", "md5"), ("pdq", "pdq"))} == {
        "A2"
    }
    assert after[("sha1", EXPECTED[0]["sha1"])].category == "A2"
    assert ("md5", EXPECTED[1]["md5"]) not in after and ("md5", EXPECTED[3]["md5"]) not in after
    assert after[("md5", EXPECTED[2]["md5"])].category == "A1"  # untouched
    assert after[("md5", EXPECTED[5]["md5"])].category == "B2"
    with Session(engine) as session:
        kept = session.get(ListEntry, referenced)
        assert kept is not None and kept.retired
    versions = {v.id: v for v in list_versions(engine)}
    assert (versions[second].withdrawn, versions[second].reclassified) == (4 + 2, 4)
    assert (versions[second].imported, versions[second].duplicates) == (4, 4)
    assert versions[first].withdrawn == 0  # "never-seen" matched nothing
    event = audit.entries(engine, "list.import")[0]
    assert (event.details["withdrawn"], event.details["reclassified"]) == (6, 4)


def test_deletion_only_applies_to_ncmec_entries(engine: Engine) -> None:
    """A label that happens to equal an NCMEC id in a list from elsewhere is left alone."""
    csv = f"md5,{EXPECTED[1]['md5']},1,I-1\n".encode()
    import_list(engine, get_importer("csv"), io.BytesIO(csv), source="other", version="1")
    load(engine, "ncmec_v2_update.xml")
    entry = held(engine)[("md5", EXPECTED[1]["md5"])]
    assert entry.label == "I-1" and entry.category == "1"


def test_status_document_imports_nothing_and_changes_nothing(engine: Engine) -> None:
    (only,) = read("ncmec_status.xml")
    assert isinstance(only, RejectedRecord) and "status document" in only.reason
    with pytest.raises(NothingToImport, match="rejected"):
        load(engine, "ncmec_status.xml")
    assert list_versions(engine) == []
    assert audit.entries(engine) == []


def _big_feed(entries: int) -> Iterator[bytes]:
    yield f'<queryResult xmlns="{NS}"><images>'.encode()
    for n in range(entries):
        yield (
            f"<image><id>I-{n}</id><classification>A1</classification><fingerprints>"
            f"<md5>{n:032x}</md5><sha1>{n:040x}</sha1></fingerprints></image>"
        ).encode()
    yield b"</images></queryResult>"


def _peak_parsing(entries: int) -> int:
    data = io.BytesIO(b"".join(_big_feed(entries)))
    tracemalloc.start()
    try:
        count = sum(1 for _ in get_importer("ncmec").records(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 2 * entries
    return peak


def test_parser_memory_does_not_grow_with_the_entries() -> None:
    """Allocation peaks (not timings): 10x the entries may not cost more than a little more."""
    small, big = _peak_parsing(2_000), _peak_parsing(20_000)
    assert big < small * 1.5 + 64 * 1024, (small, big)


def test_cli_applies_an_update_to_the_persisted_index(tmp_path: Path) -> None:
    from tests.node.test_lists_cli import match_lines, node_dir, run

    config = node_dir(tmp_path)
    run("list", "import", str(FIXTURES / "ncmec_v2.xml"), "--format", "ncmec", *config)
    queries = tmp_path / "q.txt"
    queries.write_text(f"md5 {EXPECTED[1]['md5']}\nmd5 {EXPECTED[0]['md5']}\n")
    before = match_lines(run("list", "match", str(queries), *config))
    assert [len(line["matches"]) for line in before] == [1, 1]  # type: ignore[arg-type]
    out = run("list", "import", str(FIXTURES / "ncmec_v2_update.xml"), "--format", "ncmec", *config)
    assert "withdrawn by the source 6, re-classified 4" in out
    after = match_lines(run("list", "match", str(queries), *config))
    assert after[0]["matches"] == []  # I-1 was deleted by NCMEC: the index no longer has it
    hits = after[1]["matches"]
    assert isinstance(hits, list) and len(hits) == 1
    assert (hits[0]["label"], hits[0]["category"]) == ("I-0", "A2")


def test_deletions_that_match_nothing_change_nothing(engine: Engine) -> None:
    xml = f'<queryResult xmlns="{NS}"><images><deletedImage><id>gone</id></deletedImage>'
    xml += "</images></queryResult>"
    with pytest.raises(NothingToImport, match="1 deletions matched no held entry"):
        import_list(engine, get_importer("ncmec"), io.StringIO(xml), source="d", version="1")
    assert list_versions(engine) == [] and audit.entries(engine) == []


def test_a_deleted_video_leaves_an_image_with_the_same_id(engine: Engine) -> None:
    image, video = EXPECTED[0]["md5"], EXPECTED[1]["md5"]
    first = (
        f'<queryResult xmlns="{NS}"><images><image><id>X</id><fingerprints><md5>{image}</md5>'
        f"</fingerprints></image></images><videos><video><id>X</id><fingerprints><md5>{video}"
        "</md5></fingerprints></video></videos></queryResult>"
    )
    import_list(engine, get_importer("ncmec"), io.StringIO(first), source="a", version="1")
    delta = f'<queryResult xmlns="{NS}"><videos><deletedVideo><id>X</id></deletedVideo>'
    delta += "</videos></queryResult>"
    summary = import_list(
        engine, get_importer("ncmec"), io.StringIO(delta), source="b", version="2"
    )
    assert summary.withdrawn == 1
    assert set(held(engine)) == {("md5", image)}
