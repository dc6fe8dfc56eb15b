"""Each demo node's private list, built the way an agency builds one: by hashing its own
(here: benign, generated) reference images and videos with the function's pipeline."""

from __future__ import annotations

import json
from pathlib import Path

from libra.demo.world import World
from protocol.hashes import HashFamily
from worker_function.hashing import hash_image
from worker_function.video.decode import hash_video

# The @odata.context of a VICS 2.0 Media export (what the node's vics importer keys on).
VICS_CONTEXT = (
    "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/CUSTOM/$metadata#Media"
)

# Nodes hold different exact families, as real agencies do; all of them hold PDQ, so re-encoded
# and resized copies are found too. Assigned by node position in the world.
EXACT_FAMILY_BY_POSITION = (HashFamily.MD5, HashFamily.SHA1, HashFamily.SHA256)


def node_list_families(world: World) -> dict[str, tuple[HashFamily, HashFamily]]:
    return {
        plan.node_id: (EXACT_FAMILY_BY_POSITION[i % len(EXACT_FAMILY_BY_POSITION)], HashFamily.PDQ)
        for i, plan in enumerate(world.nodes)
    }


def write_node_lists(world: World, node_id: str, directory: Path) -> list[tuple[str, Path]]:
    """Write the node's list as an agency would, in two files imported in this order. Returns
    (format, path) pairs.

    1. One INTERPOL ICSE CSV: a row per listed image with its exact hash and its PDQ, so that one
       row is one list record (issue 16: an exact copy found by the exact hash and a re-encoded
       copy found by PDQ are then the same item, named by its PDQ, at every node).
    2. `libra hash --regions` output of the same images (issue 18): its PDQ values are held
       already, so the import keeps only their region hashes, with which centred crops match.
    """
    exact, _perceptual = node_list_families(world)[node_id]
    digests = [hash_image(data, regions=True) for data in world.list_images(node_id)]
    ids = sorted(i for i in world.node(node_id).known_ids if i in world.known)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "icse.csv"
    lines = [f"{exact.value.upper()};PDQ;Image ID"]
    for pool_id, digest in zip(ids, digests, strict=True):
        lines.append(f"{getattr(digest.hashes, exact.value)};{digest.hashes.pdq};{pool_id}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    regions = directory / "regions.jsonl"
    regions.write_text(
        "".join(
            json.dumps({"hashes": d.hashes.model_dump(mode="json", exclude_none=True)}) + "\n"
            for d in digests
        ),
        encoding="utf-8",
    )
    out = [("icse", path), ("libra-hash", regions)]
    videos = world.list_videos(node_id)
    if videos:
        vics = directory / "videos-vics.json"
        vics.write_text(vics_videos(videos), encoding="utf-8")
        out.append(("vics", vics))
    return out


def vics_videos(videos: list[tuple[str, bytes]]) -> str:
    """A VICS 2.0 file with one Media per listed video: its MD5, SHA-1 and SHA-256 and its vPDQ
    (an AlternativeHashes entry, Meta's ``frame,quality,pdq,timestamp`` lines).

    One Media is one list record, so at every node an exact copy (found by SHA-256 as
    ``video-sha256``) and a re-encoded one (found by vPDQ) are the same item, named by its
    SHA-256 (node/federation/report_items.py)."""
    media = []
    for video_id, data in videos:
        digest = hash_video(data)
        lines = "".join(
            f"{f.frame},{f.quality},{f.pdq},{f.timestamp:.3f}\n" for f in digest.video.frames
        )
        media.append(
            {
                "MediaID": video_id,
                "Category": 1,
                "MD5": digest.hashes.md5,
                "SHA1": digest.hashes.sha1,
                "SHA256": digest.hashes.sha256,
                "AlternativeHashes": [{"HashName": "vpdq", "HashValue": lines}],
            }
        )
    return json.dumps({"@odata.context": VICS_CONTEXT, "value": media}, indent=1) + "\n"
