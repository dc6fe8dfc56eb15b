"""Imports as one transaction, versions, removal, the audit log and encryption at rest."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session, select

from node import audit
from node.db import make_engine
from node.keys.list_encryption import ListKey, ListKeyError, create_list_key, load_list_key
from node.lists import ListFormatError, get_importer, import_list, list_versions, remove_version
from node.lists.export import ExportError, export
from node.matching.matcher import MatchIndex
from node.models import AnalysedImage, CrawlCycle, ListEntry
from protocol.hashes import HashFamily

FIXTURES = Path(__file__).parent / "fixtures" / "lists"
EXPECTED: list[dict[str, str]] = json.loads((FIXTURES / "expected.json").read_text())


def load(engine: Engine, fmt: str, name: str, **kw: object) -> int:
    with (FIXTURES / name).open("rb") as stream:
        summary = import_list(engine, get_importer(fmt), stream, source=name, version="1", **kw)  # type: ignore[arg-type]
    return summary.list_version_id


@pytest.fixture
def key(tmp_path: Path) -> ListKey:
    return create_list_key(tmp_path / "lists.key")


@pytest.fixture
def secure(tmp_path: Path, key: ListKey) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'secure.sqlite3'}", key)


def test_broken_file_leaves_lists_unchanged_and_says_where(engine: Engine) -> None:
    load(engine, "ncmec", "ncmec.xml")
    with Session(engine) as session:
        before = len(session.exec(select(ListEntry)).all())
    with pytest.raises(ListFormatError) as info:
        load(engine, "vics", "vics2_broken.json")
    assert "Media #" in str(info.value)
    with Session(engine) as session:
        assert len(session.exec(select(ListEntry)).all()) == before
    assert len(list_versions(engine)) == 1  # no version row for the failed import


def test_versions_record_source_counts_per_family_and_actor(engine: Engine) -> None:
    load(engine, "icse", "icse.csv", actor="analyst1", reason="monthly ICSE")
    (version,) = list_versions(engine)
    assert version.source == "icse.csv" and version.actor == "analyst1"
    assert json.loads(version.family_counts) == {"md5": 6, "photodna": 6, "sha1": 6}
    assert version.rejected == 1
    (event,) = audit.entries(engine, "list.")
    assert (event.action, event.actor, event.reason) == ("list.import", "analyst1", "monthly ICSE")
    assert event.details["imported"] == 18


def test_photodna_is_stored_but_never_matched(engine: Engine) -> None:
    load(engine, "icse", "icse.csv")
    index = MatchIndex.from_db(engine)
    assert "photodna" not in {f.value for f in index.counts()}
    assert index.counts()[HashFamily.MD5] == 6


def test_remove_deletes_or_retires_and_is_audited(engine: Engine) -> None:
    version = load(engine, "plain", "plain_md5.txt")
    with Session(engine) as session, session.begin():
        first = session.exec(select(ListEntry)).first()
        assert first is not None
        cycle = CrawlCycle()
        session.add(cycle)
        session.flush()
        assert cycle.id is not None
        session.add(AnalysedImage(cycle_id=cycle.id, url="u", final_url="u", entry_id=first.id))
    summary = remove_version(engine, version, reason="list withdrawn", actor="lead")
    assert (summary.deleted, summary.retired) == (5, 1)
    assert len(MatchIndex.from_db(engine)) == 0  # retired entries never match
    assert [e.action for e in audit.entries(engine)] == ["list.remove", "list.import"]
    # The retired value comes back when it is imported again.
    again = load(engine, "plain", "plain_md5.txt")
    assert len(MatchIndex.from_db(engine)) == 6
    assert again != version


def test_audit_log_is_append_only(engine: Engine, tmp_path: Path) -> None:
    audit.log(engine, "test.event", subject="x", reason="why", actor="me")
    with engine.begin() as conn, pytest.raises(DatabaseError, match="append-only"):
        conn.exec_driver_sql("UPDATE audit_event SET actor = 'someone else'")
    with engine.begin() as conn, pytest.raises(DatabaseError, match="append-only"):
        conn.exec_driver_sql("DELETE FROM audit_event")
    assert audit.entries(engine)[0].actor == "me"


def test_values_are_encrypted_on_disk_and_decrypt_transparently(
    secure: Engine, tmp_path: Path
) -> None:
    load(secure, "csv", "list.csv")
    raw = (
        sqlite3.connect(tmp_path / "secure.sqlite3")
        .execute("SELECT value FROM list_entry")
        .fetchall()
    )
    assert raw and all(str(v).startswith("e1:") for (v,) in raw)
    blob = (tmp_path / "secure.sqlite3").read_bytes()
    assert EXPECTED[0]["pdq"].encode() not in blob
    index = MatchIndex.from_db(secure)
    assert index.lookup(HashFamily.PDQ, [EXPECTED[0]["pdq"]])[0][0].distance == 0
    # Duplicates are still detected on ciphertext (deterministic encryption).
    with (FIXTURES / "list.csv").open("rb") as stream:
        again = import_list(secure, get_importer("csv"), stream, source="x", version="2")
    assert (again.imported, again.duplicates) == (0, 12)


def test_wrong_or_missing_key_refuses_to_open(secure: Engine, tmp_path: Path) -> None:
    load(secure, "plain", "plain_md5.txt")
    secure.dispose()
    url = f"sqlite:///{tmp_path / 'secure.sqlite3'}"
    with pytest.raises(ListKeyError, match="does not decrypt"):
        make_engine(url, ListKey(b"\x01" * 32))
    bare = make_engine(url)
    with pytest.raises(ListKeyError, match="no list key"):
        MatchIndex.from_db(bare)
    with pytest.raises(ListKeyError, match="no list key"):
        load_list_key(tmp_path / "absent.key", env={})


def test_key_from_env_var_wins_and_is_validated(tmp_path: Path, key: ListKey) -> None:
    import base64

    other = base64.b64encode(b"\x02" * 32).decode()
    assert (
        load_list_key(tmp_path / "lists.key", env={"LIBRA_NODE_LIST_KEY": other}).master
        == b"\x02" * 32
    )
    assert load_list_key(tmp_path / "lists.key", env={}).master == key.master
    with pytest.raises(ListKeyError, match="32 bytes"):
        load_list_key(tmp_path / "lists.key", env={"LIBRA_NODE_LIST_KEY": "c2hvcnQ="})


def test_export_vics_round_trips_through_the_importer(secure: Engine) -> None:
    load(secure, "vics", "vics2_case.json")
    out = io.StringIO()
    count = export(secure, out, "vics")
    assert count == 6 * 4  # md5, sha1, photodna, pdq per media
    document = json.loads(out.getvalue())
    assert document["@odata.context"].endswith("#Media") and len(document["value"]) == 6
    records = list(get_importer("vics").records(io.BytesIO(out.getvalue().encode())))
    mine = {(r.family.value, r.value) for r in records}  # type: ignore[union-attr]
    assert {("pdq", i["pdq"]) for i in EXPECTED} <= mine
    assert {("photodna", i["photodna_hex"]) for i in EXPECTED} <= mine


def test_export_plain_needs_one_family(engine: Engine) -> None:
    load(engine, "csv", "list.csv")
    with pytest.raises(ExportError):
        export(engine, io.StringIO(), "plain")
    out = io.StringIO()
    assert export(engine, out, "plain", family="pdq") == 6
    assert out.getvalue().split() == sorted(i["pdq"] for i in EXPECTED) or set(
        out.getvalue().split()
    ) == {i["pdq"] for i in EXPECTED}
