"""The coverage vector (report-v1-coverage.json) rebuilds from its listed inputs alone, with
an independent reading of docs/protocol.md §3: HMAC members, the item identity rule, Theta
lg_k 15 seed 9001 trimmed, compact and ordered, and complete coverage."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from typing import Any

from datasketches import (
    compact_theta_sketch,
    theta_intersection,
    theta_union,
    update_theta_sketch,
)

from protocol.models import Report
from protocol.testvector import VECTOR_COVERAGE_PATH

PRIORITY = ("pdq", "sha256", "sha1", "md5")


def _vector() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTOR_COVERAGE_PATH.read_text(encoding="utf-8"))
    return data


def _member(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _theta_b64(members: list[str]) -> str:
    sketch = update_theta_sketch(15, seed=9001)
    for member in members:
        sketch.update(member)
    sketch.trim()
    return base64.b64encode(sketch.compact(True).serialize(True)).decode()


def _identity(records: dict[str | None, list[dict[str, str]]], sighting: dict[str, Any]) -> str:
    """§3's rule, read from the docs: the record's first family of pdq, sha256, sha1, md5,
    else the matched entry's own family and value; an entry without record stands alone."""
    matched = sighting["matched"]
    hashes = records[sighting["record"]] if sighting["record"] is not None else [matched]
    by_family = {h["family"]: h["value"] for h in hashes}
    for family in PRIORITY:
        if family in by_family:
            return f"{family}:{by_family[family].lower()}"
    return f"{matched['family']}:{matched['value'].lower()}"


def test_every_sketch_rebuilds_byte_for_byte_in_any_order() -> None:
    vector = _vector()
    key = bytes.fromhex(vector["federation_key_hex"])
    report = Report.from_payload(vector["payload_utf8"].encode())
    records = {r["record"]: r["hashes"] for r in vector["list_records"] if r["record"]}
    shuffle = random.Random(16)
    for entry in vector["theta_inputs"]:
        cell = report.cells[entry["cell_index"]]
        sightings = entry["sightings"]
        assert len(sightings) == cell.matches
        urls = list(dict.fromkeys(s["final_url"] for s in sightings))
        identities = list(dict.fromkeys(_identity(records, s) for s in sightings))
        assert (urls, identities) == (entry["urls"], entry["item_identities"])
        url_members = [_member(key, url) for url in urls]
        item_members = [_member(key, text) for text in identities]
        assert (url_members, item_members) == (entry["url_members"], entry["item_members"])
        assert (cell.distinct, cell.items) == (len(urls), len(identities))
        for members, sent in ((url_members, cell.url_theta), (item_members, cell.item_theta)):
            assert _theta_b64(members) == sent
            shuffled = members[:]
            shuffle.shuffle(shuffled)
            assert _theta_b64(shuffled) == sent  # ordered compact bytes: order-free


def test_both_serial_versions_occur_and_decode() -> None:
    report = Report.from_payload(_vector()["payload_utf8"].encode())
    versions = set()
    for cell in report.cells:
        for b64, count in ((cell.url_theta, cell.distinct), (cell.item_theta, cell.items)):
            raw = base64.b64decode(b64 or "")
            versions.add(raw[1])
            sketch = compact_theta_sketch.deserialize(raw, 9001)
            assert not sketch.is_estimation_mode() and sketch.get_estimate() == count
    assert versions == {3, 4}


def test_one_item_has_one_key_however_it_was_found() -> None:
    vector = _vector()
    report = Report.from_payload(vector["payload_utf8"].encode())
    de = [c for c in report.cells if c.country == "DE"]
    assert {c.hash_family.value for c in de} == {"pdq", "md5"}
    union = theta_union(15, seed=9001)
    for cell in de:
        union.update(compact_theta_sketch.deserialize(base64.b64decode(cell.item_theta or "")))
    # Item A is found by pdq in one cell and by md5 in the other: 2 + 2 items, 3 distinct.
    assert sum(c.items or 0 for c in de) == 4
    assert round(union.get_result().get_estimate()) == vector["set_examples"]["items_DE"] == 3
    nl = [c for c in report.cells if c.country == "NL"]
    nl_union = theta_union(15, seed=9001)
    for cell in nl:
        nl_union.update(compact_theta_sketch.deserialize(base64.b64decode(cell.item_theta or "")))
    both = theta_intersection(seed=9001)
    both.update(union.get_result())
    both.update(nl_union.get_result())
    assert round(both.get_result().get_estimate()) == vector["set_examples"]["items_DE_and_NL"]
    assert vector["set_examples"]["items_DE_and_NL"] == 1


def test_coverage_is_complete() -> None:
    report = Report.from_payload(_vector()["payload_utf8"].encode())
    assert sum(r.pages_fetched for r in report.coverage) == report.denominators.pages_fetched
    assert sum(r.images_hashed for r in report.coverage) == report.denominators.images_hashed
    rows = {(r.country, r.asn, r.hoster): r.images_hashed for r in report.coverage}
    for cell in report.cells:
        assert (cell.country, cell.asn, cell.hoster) in rows
    assert ("FR", 64504, "Hoster D SAS") in rows  # crawled, nothing found: still a row
    assert not any(c.country == "FR" for c in report.cells)


def test_estimation_example_rebuilds_and_holds_its_members() -> None:
    example = _vector()["estimation_example"]
    key = bytes.fromhex(_vector()["federation_key_hex"])
    pattern = "https://img{i}.est.example.net/{i:05d}.jpg"
    assert example["texts"].startswith(pattern)
    members = [_member(key, pattern.format(i=i)) for i in range(example["members"])]
    raw = base64.b64decode(_theta_b64(members))
    assert (len(raw), hashlib.sha256(raw).hexdigest()) == (
        example["bytes_length"],
        example["bytes_sha256"],
    )
    sketch = compact_theta_sketch.deserialize(raw, 9001)
    assert sketch.is_estimation_mode() and sketch.num_retained == 1 << 15
    assert example["lower_bound_3"] <= example["members"] <= example["upper_bound_3"]
    # The stated bound: 3-sigma within 2 % of the estimate.
    estimate = example["estimate"]
    assert example["upper_bound_3"] - estimate <= 0.02 * estimate
    assert estimate - example["lower_bound_3"] <= 0.02 * estimate
    low, high = example["accepted_range_6_sigma"]
    assert low <= example["members"] <= high


def test_conformance_estimation_cases_use_the_vector_recipe() -> None:
    from protocol.conformance_estimation import estimation_cases

    example = _vector()["estimation_example"]
    low, high = example["accepted_range_6_sigma"]
    within, outside = estimation_cases()
    counts = []
    for case in (within, outside):
        report = Report.from_payload(case.payload)
        (cell,) = report.cells
        raw = base64.b64decode(cell.url_theta or "")
        assert hashlib.sha256(raw).hexdigest() == example["bytes_sha256"]
        counts.append(cell.distinct)
    assert low <= counts[0] <= high and not low <= counts[1] <= high
