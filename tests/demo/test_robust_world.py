"""Issue 18 in the demo world: one copy of each evasive kind, each expected in the truth, and each
found by the node's matcher (default settings) with the list the demo imports, by its method."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from libra.demo import imagegen
from libra.demo.history import PERIODS, History
from libra.demo.lists import write_node_lists
from libra.demo.world import KIND_EVASIVE, World
from node.lists import ImportedRecord, get_importer
from node.matching.matcher import MatchIndex, Thresholds
from worker_function.hashing import hash_image
from worker_function.trim import border_box


def test_every_evasive_kind_is_placed_and_expected(world: World, small_world: World) -> None:
    for w in (world, small_world):
        placed = {p.variant for p in w.placements if p.kind == KIND_EVASIVE}
        assert placed == {k.value for k in imagegen.EVASIVE_KINDS}
        expected = {m.url for matches in w.truth().per_node.values() for m in matches}
        for p in w.placements:
            if p.kind == KIND_EVASIVE:
                assert w.url(p.site, p.url_path) in expected, p.variant


def test_evasive_copies_really_are_changed(world: World) -> None:
    for p in world.placements:
        if p.kind != KIND_EVASIVE:
            continue
        assert p.base_id is not None
        a = Image.open(io.BytesIO(world.known[p.base_id]))
        b = Image.open(io.BytesIO(world.images[p.image_id]))
        if p.variant in ("rotate90", "rotate270"):
            assert b.size == (a.height, a.width)
        elif p.variant in ("border", "letterbox"):
            assert b.size != a.size
            assert border_box(np.asarray(b.convert("L"))) is not None  # uniform bars were added
        elif p.variant in ("crop5", "crop15"):
            assert b.width < a.width and b.height < a.height


def test_each_copy_is_found_by_its_method_with_the_demo_list(
    small_world: World, tmp_path: Path
) -> None:
    """The node's matcher at default settings (dihedral on), fed the function's hashes of each
    copy and the two lists the demo imports (an ICSE list, then `libra hash --regions` output
    whose region hashes join the PDQ entries already held): every copy is found by its method,
    centred crops included, and every one is in the history's truth."""
    history = History(small_world, {}, PERIODS)
    truth: set[tuple[str, str]] = set()
    crops_found = 0
    for plan in small_world.nodes:
        [(list_format, path), (regions_format, regions_path)] = write_node_lists(
            small_world, plan.node_id, tmp_path / plan.node_id
        )
        importer = get_importer(list_format)
        with open(path, encoding="utf-8") as stream:
            records = [r for r in importer.records(stream) if isinstance(r, ImportedRecord)]
        with open(regions_path, encoding="utf-8") as stream:
            with_regions = [
                r
                for r in get_importer(regions_format).records(stream)
                if isinstance(r, ImportedRecord)
            ]
        pdq = [r for r in records if r.family.value == "pdq"]
        assert len(pdq) == len(plan.known_ids) and len(records) == 2 * len(pdq)
        # One row per listed image: its exact hash and its PDQ share the record number.
        assert {r.line for r in records} == {r.line for r in pdq}
        # The second list repeats the PDQ values (in the same order) and brings their regions.
        assert [r.value for r in with_regions] == [r.value for r in pdq]
        index = MatchIndex([(n, "pdq", r.value) for n, r in enumerate(pdq)], Thresholds())
        index.add_regions([(n, r.regions) for n, r in enumerate(with_regions) if r.regions])
        known = sorted(plan.known_ids)
        truth |= {(m.site, m.path) for m in history.matches(plan.node_id, 0, {})}
        for p in small_world.placements:
            if p.kind != KIND_EVASIVE or p.base_id not in plan.known_ids:
                continue
            assert p.variant is not None
            method = imagegen.EVASIVE_KINDS[imagegen.VariantKind(p.variant)]
            seen = hash_image(small_world.images[p.image_id], dihedral=True).hashes
            found = index.best(seen)
            assert found is not None, p.variant
            if method == "region":
                crops_found += 1
            assert found.method.value == method
            assert known[found.entry_id] == p.base_id
    # Centred crops are found, and the history's truth counts those the nodes crawl.
    assert crops_found > 0
    crops = {
        (p.site, p.url_path)
        for p in small_world.placements
        if p.kind == KIND_EVASIVE
        and p.variant is not None
        and imagegen.EVASIVE_KINDS[imagegen.VariantKind(p.variant)] == "region"
    }
    assert crops & truth
