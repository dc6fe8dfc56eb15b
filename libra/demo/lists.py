"""Each demo node's private list, built the way an agency builds one: by hashing its own
(here: benign, generated) reference images with the function's pipeline."""

from __future__ import annotations

import json
from pathlib import Path

from libra.demo.world import World
from protocol.hashes import HashFamily
from worker_function.hashing import hash_image

# Nodes hold different exact families, as real agencies do; all of them hold PDQ, so re-encoded
# and resized copies are found too. Assigned by node position in the world.
EXACT_FAMILY_BY_POSITION = (HashFamily.MD5, HashFamily.SHA1, HashFamily.SHA256)


def node_list_families(world: World) -> dict[str, tuple[HashFamily, HashFamily]]:
    return {
        plan.node_id: (EXACT_FAMILY_BY_POSITION[i % len(EXACT_FAMILY_BY_POSITION)], HashFamily.PDQ)
        for i, plan in enumerate(world.nodes)
    }


def write_node_lists(world: World, node_id: str, directory: Path) -> list[tuple[str, Path]]:
    """Write one plain list file per family for the node; returns (family, path) pairs."""
    exact, perceptual = node_list_families(world)[node_id]
    # With region hashes (issue 18): the PDQ list is `libra hash --regions` output (.jsonl).
    digests = [hash_image(data, regions=True) for data in world.list_images(node_id)]
    directory.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []
    for family in (exact, perceptual):
        if family is HashFamily.PDQ:
            path = directory / "pdq.jsonl"
            hashed = [
                {"hashes": d.hashes.model_dump(mode="json", exclude_none=True)} for d in digests
            ]
            path.write_text("".join(json.dumps(h) + "\n" for h in hashed), encoding="utf-8")
            written.append((family.value, path))
            continue
        path = directory / f"{family.value}.txt"
        lines = [str(getattr(d.hashes, family.value)) for d in digests]
        path.write_text(
            f"# demo list of {node_id}: {len(lines)} {family.value} values of benign images\n"
            + "\n".join(lines)
            + "\n",
            encoding="utf-8",
        )
        written.append((family.value, path))
    return written
