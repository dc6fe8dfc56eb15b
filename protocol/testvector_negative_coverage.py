"""Negative vectors for the issue 16 members (docs/protocol.md §3): a report's ``coverage`` and
a cell's ``url_theta``, ``items`` and ``item_theta``. Each case is report-v1 with one defect;
the expected codes are §1's rows 12 (the schema), 14 (a sketch's shape) and 15 (a sketch that
cannot hold the count).

Appended after every older case, so the older cases keep their sequences and bytes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from .testvector import hll_sketch_b64
from .testvector_cases import Builder, Payload, expected, jcs, set_cell
from .theta import THETA_SEED, keyed, make_theta

# The vector federation key is not needed: any key gives well-formed sketches.
_KEY = bytes(32)
# report-v1's cells: DE/64501/Hoster A Ltd pdq (matches 3, distinct 2) and ZZ/0/unknown md5
# (matches 1, distinct 1); denominators 60 pages, 410 images. This coverage is complete.
_DE = {"country": "DE", "asn": 64501, "hoster": "Hoster A Ltd"}
_ZZ = {"country": "ZZ", "asn": 0, "hoster": "unknown"}


def _coverage(de: tuple[int, int], zz: tuple[int, int] | None) -> list[dict[str, Any]]:
    rows = [{**_DE, "pages_fetched": de[0], "images_hashed": de[1]}]
    if zz is not None:
        rows.append({**_ZZ, "pages_fetched": zz[0], "images_hashed": zz[1]})
    return rows


def _with(**members: Any) -> Callable[[Payload], None]:
    def edit(data: Payload) -> None:
        data.update(members)

    return edit


def _cell(**members: Any) -> Callable[[Payload], None]:
    def edit(data: Payload) -> None:
        data["cells"][0].update(members)

    return edit


def _urls(count: int) -> list[str]:
    return [f"https://img{i}.de.example.net/{i:04d}.jpg" for i in range(count)]


def _theta(count: int) -> str:
    return make_theta(_KEY, _urls(count))


def _other_theta(
    count: int,
    *,
    lg_k: int = 15,
    seed: int = THETA_SEED,
    ordered: bool = True,
    compressed: bool = True,
) -> str:
    """A Theta sketch of ``count`` members built with other parameters than §3's."""
    from datasketches import update_theta_sketch

    sketch = update_theta_sketch(lg_k, seed=seed)
    for url in _urls(count):
        sketch.update(keyed(_KEY, url))
    sketch.trim()
    raw = sketch.compact(ordered).serialize(ordered and compressed)
    return base64.b64encode(raw).decode()


def _swapped(b64: str) -> str:
    """A serial version 3 sketch of two entries (16 header bytes) with the entries swapped."""
    raw = base64.b64decode(b64)
    assert raw[1] == 3 and raw[0] == 2 and len(raw) == 32
    return base64.b64encode(raw[:16] + raw[24:32] + raw[16:24]).decode()


def coverage_cases(b: Builder) -> None:
    bad = expected(422, "malformed_payload")
    mismatch = expected(422, "sketch_mismatch")

    def case(name: str, description: str, expected: dict[str, Any], *edits: Any) -> None:
        def edit(data: Payload) -> None:
            for one in edits:
                one(data)

        b.add(name, description, expected, jcs(b.report(name, edit)))

    # --- coverage: complete when given (60 = 50 + 10 pages, 410 = 400 + 10 images)
    case(
        "coverage-pages-not-summing",
        "coverage pages_fetched sum to 61, denominators say 60",
        bad,
        _with(coverage=_coverage((51, 400), (10, 10))),
    )
    case(
        "coverage-images-not-summing",
        "coverage images_hashed sum to 409, denominators say 410",
        bad,
        _with(coverage=_coverage((50, 399), (10, 10))),
    )
    case(
        "coverage-cell-hoster-missing",
        "the ZZ/0/unknown cell's hoster has no coverage row (DE's row holds all the effort)",
        bad,
        _with(coverage=_coverage((60, 410), None)),
    )
    case(
        "coverage-matches-over-images",
        "the ZZ/0/unknown hoster has 1 match but 0 images hashed",
        bad,
        _with(coverage=_coverage((50, 410), (10, 0))),
    )

    def duplicate_row(data: Payload) -> None:
        rows = _coverage((25, 200), (10, 10))
        rows.insert(1, {**_DE, "pages_fetched": 25, "images_hashed": 200})
        data["coverage"] = rows  # sums still 60 and 410

    case(
        "coverage-duplicate-row",
        "DE/64501/Hoster A Ltd has two coverage rows (the sums still match)",
        bad,
        duplicate_row,
    )
    case(
        "coverage-unknown-member",
        'a coverage row holds "hosts_seen"',
        bad,
        _with(coverage=[{**row, "hosts_seen": 1} for row in _coverage((50, 400), (10, 10))]),
    )
    case(
        "coverage-bool-count",
        "a coverage row's images_hashed is true",
        bad,
        _with(
            coverage=[
                *_coverage((50, 400), None),
                {**_ZZ, "pages_fetched": 10, "images_hashed": True},
            ]
        ),
    )

    # --- items and item_theta: together, items <= matches (the cell has matches 3)
    case(
        "items-without-item-theta",
        "items 2 without item_theta",
        bad,
        _cell(items=2),
    )
    case(
        "item-theta-without-items",
        "item_theta (2 members) without items",
        bad,
        _cell(item_theta=_theta(2)),
    )
    case(
        "items-over-matches",
        "items 4 > matches 3 (item_theta holds 4)",
        bad,
        _cell(items=4, item_theta=_theta(4)),
    )
    case(
        "items-bool",
        "items is true",
        bad,
        _cell(items=True, item_theta=_theta(1)),
    )

    # --- the sketches' shape (row 14) and counts (row 15)
    valid = base64.b64decode(_theta(2))
    garbage = (hashlib.sha256(b"garbled theta").digest() * 2)[:40]
    case(
        "theta-garbled",
        "url_theta is 40 bytes that are no sketch",
        bad,
        set_cell("url_theta", base64.b64encode(garbage).decode()),
    )
    case(
        "theta-entries-out-of-order",
        "url_theta (2 members, serial version 3) flagged ordered, its two entries swapped",
        bad,
        set_cell("url_theta", _swapped(_other_theta(2, compressed=False))),
    )
    case(
        "theta-truncated",
        "url_theta (2 members) cut to half its bytes",
        bad,
        set_cell("url_theta", base64.b64encode(valid[: len(valid) // 2]).decode()),
    )
    case(
        "theta-padded",
        "url_theta (2 members) with one zero byte appended (longer than its header implies)",
        bad,
        set_cell("url_theta", base64.b64encode(valid + b"\0").decode()),
    )
    case("theta-not-base64", "url_theta is not base64", bad, set_cell("url_theta", "%%%"))
    case(
        "theta-wrong-seed",
        "url_theta (2 members) built with seed 9002",
        bad,
        set_cell("url_theta", _other_theta(2, seed=9002)),
    )
    case(
        "theta-unordered",
        "url_theta (2 members) compact but not ordered (serial version 3)",
        bad,
        set_cell("url_theta", _other_theta(2, ordered=False)),
    )
    case(
        "theta-is-hll",
        "url_theta holds the cell's HLL sketch bytes",
        bad,
        set_cell("url_theta", hll_sketch_b64([keyed(_KEY, url) for url in _urls(2)])),
    )

    def estimation_too_small(data: Payload) -> None:
        data["cells"][0].update(
            {"matches": 3000, "distinct": 3000, "url_theta": _other_theta(3000, lg_k=10)}
        )

    case(
        "theta-estimation-too-few-entries",
        "url_theta of 3000 members built with lg_k 10: estimation mode with 1024 entries "
        "(lg_k 15 keeps every member up to 32 768)",
        bad,
        estimation_too_small,
    )
    case(
        "url-theta-not-distinct",
        "url_theta holds 3 members, distinct is 2 (exact mode: must be equal)",
        mismatch,
        _cell(url_theta=_theta(3)),
    )
    case(
        "item-theta-not-items",
        "item_theta holds 1 member, items is 2 (exact mode: must be equal)",
        mismatch,
        _cell(items=2, item_theta=_theta(1)),
    )
