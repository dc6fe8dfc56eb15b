"""The issue 16 report vector: cells with Theta sketches (url_theta, items, item_theta) and the
report's per-hoster coverage (docs/protocol.md §3).

Everything is built from fixed inputs (the vector federation key, a fictional hash list whose
values are SHA-256 digests of public labels, fixed URLs under example.net), so another agency
can rebuild every sketch byte for byte: a compact, ordered Theta sketch of a set does not
depend on the order its members were inserted in (unlike the HLL bytes of §7).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from .hashes import HashFamily
from .models import Denominators, HosterCoverage, Report, ReportCell
from .sketch_bounds import distinct_bounds
from .testvector import FEDERATION_KEY_HEX, build_vector, hll_sketch_b64, vector_report
from .theta import (
    IDENTITY_PRIORITY,
    THETA_LG_K,
    THETA_SEED,
    decode_theta,
    item_identity,
    keyed,
    make_theta,
    theta_bounds,
)

# Hex digits per family (the list's values are fictional: digests of public labels).
_HEX_DIGITS = {"sha256": 64, "sha1": 40, "md5": 32, "pdq": 64, "phash": 16, "dhash": 16}
# Members of the estimation-mode example (a recipe, not stored: the sketch is 209 KB).
ESTIMATION_COUNT = 40_000
ESTIMATION_PATTERN = "https://img{i}.est.example.net/{i:05d}.jpg"


def list_value(family: str, label: str) -> str:
    """A fictional list hash of ``family``: lowercase hex of a digest of a public label."""
    digest = hashlib.sha256(f"LIBRA vector list item {label} {family}".encode()).hexdigest()
    return (digest * 2)[: _HEX_DIGITS[family]]


@dataclass(frozen=True)
class ListRecord:
    """One list item (a record) and the hashes it carries; ``record`` None: an entry that
    belongs to no record and so stands alone."""

    record: str | None
    families: tuple[str, ...]

    def hashes(self) -> list[dict[str, str]]:
        label = self.record or "standalone"
        return [{"family": f, "value": list_value(f, label)} for f in self.families]

    def value(self, family: str) -> str:
        return list_value(family, self.record or "standalone")

    def identity(self, matched_family: str) -> str:
        """The item identity text (protocol.theta.item_identity, docs/protocol.md §3)."""
        for family in IDENTITY_PRIORITY:
            if family in self.families:
                return item_identity(family, self.value(family))
        return item_identity(matched_family, self.value(matched_family))


# A: pdq and md5 (found by md5 at one hoster and by pdq at two: one identity everywhere);
# E: pdq only; B: sha256 and md5 (no pdq: sha256 names it); C: an md5 entry without record;
# D: phash only (none of the identity families: its own family and value); N00..N39: sha256
# and md5.
RECORDS = {
    "A": ListRecord("A", ("md5", "pdq")),
    "E": ListRecord("E", ("pdq",)),
    "B": ListRecord("B", ("md5", "sha256")),
    "C": ListRecord(None, ("md5",)),
    "D": ListRecord("D", ("phash",)),
    **{f"N{j:02d}": ListRecord(f"N{j:02d}", ("md5", "sha256")) for j in range(40)},
}

Sighting = tuple[str, str, str]  # (final URL, matched family, record key)
_HOSTER_A = ("DE", 64501, "Hoster A Ltd")
_HOSTER_B = ("NL", 64502, "Hoster B BV")
_UNKNOWN = ("ZZ", 0, "unknown")


def _de(name: str) -> str:
    return f"https://img.de.example.net/{name}.jpg"


def _nl(i: int) -> str:
    return f"https://cdn{i % 7}.nl.example.net/{i:04d}.jpg"


# (place, hash_family, sightings): a URL seen matching in two crawl cycles is listed twice.
CELLS: tuple[tuple[tuple[str, int, str], HashFamily, list[Sighting]], ...] = (
    (
        _HOSTER_A,
        HashFamily.PDQ,
        [
            (_de("a1"), "pdq", "A"),
            (_de("a1"), "pdq", "A"),
            (_de("a2"), "pdq", "A"),
            (_de("e1"), "pdq", "E"),
        ],
    ),
    (_HOSTER_A, HashFamily.MD5, [(_de("a3"), "md5", "A"), (_de("c1"), "md5", "C")]),
    (
        _HOSTER_B,
        HashFamily.SHA256,
        [(_nl(i), "sha256", f"N{i % 40:02d}") for i in range(299)] + [(_nl(299), "sha256", "B")],
    ),
    (_HOSTER_B, HashFamily.PDQ, [("https://cdn0.nl.example.net/moved-a.jpg", "pdq", "A")]),
    (_UNKNOWN, HashFamily.PHASH, [("https://203.0.113.9/d.jpg", "phash", "D")]),
)
# Crawl effort per hoster: FR's hoster was crawled and nothing listed was found there.
COVERAGE = (
    (*_HOSTER_A, 40, 250),
    (*_HOSTER_B, 15, 600),
    (*_UNKNOWN, 3, 20),
    ("FR", 64504, "Hoster D SAS", 2, 40),
)


def _first_seen(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def coverage_report() -> tuple[Report, list[dict[str, Any]]]:
    """The report (sequence 5) and, per cell, the inputs behind its sketches."""
    key = bytes.fromhex(FEDERATION_KEY_HEX)
    cells: list[ReportCell] = []
    inputs: list[dict[str, Any]] = []
    for index, ((country, asn, hoster), family, sightings) in enumerate(CELLS):
        urls = _first_seen([url for url, _f, _r in sightings])
        identities = _first_seen(
            [RECORDS[record].identity(matched) for _u, matched, record in sightings]
        )
        cells.append(
            ReportCell(
                country=country,
                asn=asn,
                hoster=hoster,
                hash_family=family,
                matches=len(sightings),
                distinct=len(urls),
                sketch=hll_sketch_b64([keyed(key, url) for url in urls]),
                url_theta=make_theta(key, urls),
                items=len(identities),
                item_theta=make_theta(key, identities),
            )
        )
        inputs.append(
            {
                "cell_index": index,
                "sightings": [
                    {
                        "final_url": url,
                        "matched": {"family": matched, "value": RECORDS[record].value(matched)},
                        "record": RECORDS[record].record,
                    }
                    for url, matched, record in sightings
                ],
                "urls": urls,
                "url_members": [keyed(key, url) for url in urls],
                "item_identities": identities,
                "item_members": [keyed(key, text) for text in identities],
            }
        )
    pages = sum(row[3] for row in COVERAGE)
    images = sum(row[4] for row in COVERAGE)
    report = vector_report().model_copy(
        update={
            "report_id": "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
            "sequence": 5,
            "cells": cells,
            "denominators": Denominators(pages_fetched=pages, images_hashed=images, hosts_seen=14),
            "coverage": [
                HosterCoverage(country=c, asn=a, hoster=h, pages_fetched=p, images_hashed=i)
                for c, a, h, p, i in COVERAGE
            ],
        }
    )
    # Built through the model: the coverage rules hold (the constructor checks them).
    return Report.model_validate(report.model_dump()), inputs


def _figures(b64: str) -> dict[str, Any]:
    sketch = decode_theta(b64)
    estimate, lower, upper = theta_bounds(sketch)
    return {
        "serial_version": base64.b64decode(b64)[1],
        "num_retained": sketch.num_retained,
        "estimation_mode": sketch.is_estimation_mode(),
        "estimate": estimate,
        "lower_bound_3": lower,
        "upper_bound_3": upper,
    }


def _set_examples(report: Report) -> dict[str, Any]:
    """What the coordinator computes from item sketches (docs/protocol.md §6 flows)."""
    from datasketches import theta_a_not_b, theta_intersection, theta_union

    def union(cells: list[ReportCell]) -> Any:
        merged = theta_union(THETA_LG_K, seed=THETA_SEED)
        for cell in cells:
            merged.update(decode_theta(cell.item_theta or ""))
        return merged.get_result()

    de = union([c for c in report.cells if c.country == "DE"])
    nl = union([c for c in report.cells if c.country == "NL"])
    both = theta_intersection(seed=THETA_SEED)
    both.update(de)
    both.update(nl)
    only_de = theta_a_not_b(seed=THETA_SEED).compute(de, nl)
    return {
        "items_all_cells": round(union(list(report.cells)).get_estimate()),
        "items_DE": round(de.get_estimate()),
        "items_NL": round(nl.get_estimate()),
        "items_DE_and_NL": round(both.get_result().get_estimate()),
        "items_DE_not_NL": round(only_de.get_estimate()),
        "note": (
            "unions, intersection and difference of the cells' item_theta by country: item A "
            "is counted once in DE although found there by pdq and by md5, and is the one item "
            "DE and NL share"
        ),
    }


def estimation_example() -> dict[str, Any]:
    """A sketch past 2^15 members (estimation mode): the recipe and a digest of its bytes."""
    key = bytes.fromhex(FEDERATION_KEY_HEX)
    texts = (ESTIMATION_PATTERN.format(i=i) for i in range(ESTIMATION_COUNT))
    b64 = make_theta(key, texts)
    raw = base64.b64decode(b64)
    sketch = decode_theta(b64)
    figures = _figures(b64)
    low, high = distinct_bounds(
        sketch.get_estimate(), sketch.get_lower_bound(1), sketch.get_upper_bound(1)
    )
    return {
        "texts": f"{ESTIMATION_PATTERN} for i in 0 .. {ESTIMATION_COUNT - 1}",
        "members": ESTIMATION_COUNT,
        "bytes_length": len(raw),
        "bytes_sha256": hashlib.sha256(raw).hexdigest(),
        "theta64": sketch.theta64,
        **figures,
        "accepted_range_6_sigma": [low, high],
    }


def build_coverage_vector() -> dict[str, Any]:
    report, inputs = coverage_report()
    vector = build_vector(report)
    for entry, cell in zip(inputs, report.cells, strict=True):
        entry["url_theta"] = _figures(cell.url_theta or "")
        entry["item_theta"] = _figures(cell.item_theta or "")
    vector["federation_key_hex"] = FEDERATION_KEY_HEX
    vector["list_records"] = [{"record": r.record, "hashes": r.hashes()} for r in RECORDS.values()]
    vector["theta_inputs"] = inputs
    vector["theta_note"] = (
        "member = lowercase hex HMAC-SHA256(federation key, UTF-8 text), given to a DataSketches "
        "update Theta sketch (lg_k 15, seed 9001) as a string; the sketch is trimmed and sent "
        "compact, ordered and compressed (serial version 4; one member or none: version 3). "
        "url_theta texts are the final URLs; item_theta texts are 'family:value' of the "
        "matched item's identity hash (the record's first of pdq, sha256, sha1, md5, else the "
        "matched entry's own). The bytes do not depend on insertion order."
    )
    vector["set_examples"] = _set_examples(report)
    vector["estimation_example"] = estimation_example()
    return vector
