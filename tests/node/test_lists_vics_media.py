"""VICS media labels (issue 13): every hash of a VICS Media that is a video (it carries a vPDQ)
is recorded with media "video", its MD5/SHA-1/SHA-256 included; an image's hashes stay "image".
The label decides, for one, which PSI set a digest is in ("video-sha256" or "sha256")."""

from __future__ import annotations

import io
import json
import random

from sqlalchemy.engine import Engine

from node.federation.psi import load_set
from node.lists.base import ImportedRecord, Media, VideoFamily, get_importer
from node.lists.store import import_list
from protocol.hashes import HashFamily
from tests.node.conftest import rand_hex

CONTEXT = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/US/$metadata#Media"


def _vics(rng: random.Random) -> tuple[str, dict[str, str], dict[str, str]]:
    """A VICS 2.0 file with a video Media (digests and vPDQ) and an image Media (digests and
    PDQ); the two Media's digests."""
    frames = "".join(f"{n},100,{rand_hex(rng, 256)},{n:.3f}\n" for n in range(5))
    video = {"MD5": rand_hex(rng, 128), "SHA1": rand_hex(rng, 160), "SHA256": rand_hex(rng, 256)}
    image = {"MD5": rand_hex(rng, 128), "SHA1": rand_hex(rng, 160), "SHA256": rand_hex(rng, 256)}
    media = [
        {
            "MediaID": "v1",
            "Category": 1,
            **{k: v.upper() for k, v in video.items()},
            "AlternativeHashes": [{"HashName": "vPDQ", "HashValue": frames}],
        },
        {
            "MediaID": "i1",
            "Category": 1,
            **image,
            "AlternativeHashes": [{"HashName": "PDQ", "HashValue": rand_hex(rng, 256)}],
        },
    ]
    return json.dumps({"@odata.context": CONTEXT, "value": media}), video, image


def test_every_hash_of_a_video_media_is_of_a_video() -> None:
    text, video, image = _vics(random.Random(21))
    records = list(get_importer("vics").records(io.StringIO(text)))
    assert all(isinstance(r, ImportedRecord) for r in records), records
    by_label: dict[str, list[tuple[str, Media]]] = {}
    for r in records:
        assert isinstance(r, ImportedRecord) and r.label is not None
        by_label.setdefault(r.label, []).append((r.family.value, r.media))
    assert sorted(by_label["v1"]) == [
        (HashFamily.MD5.value, Media.VIDEO),
        (HashFamily.SHA1.value, Media.VIDEO),
        (HashFamily.SHA256.value, Media.VIDEO),
        (VideoFamily.VPDQ.value, Media.VIDEO),
    ]
    assert sorted(by_label["i1"]) == [
        (HashFamily.MD5.value, Media.IMAGE),
        (HashFamily.PDQ.value, Media.IMAGE),
        (HashFamily.SHA1.value, Media.IMAGE),
        (HashFamily.SHA256.value, Media.IMAGE),
    ]
    digests: dict[str | None, set[str]] = {"v1": set(), "i1": set()}
    for r in records:
        if isinstance(r, ImportedRecord) and r.family != VideoFamily.VPDQ:
            digests[r.label].add(r.value)
    assert set(video.values()) == digests["v1"]  # upper-case hex, normalised
    assert set(image.values()) < digests["i1"]  # and its PDQ


def test_a_video_media_digest_is_in_the_video_psi_set(engine: Engine) -> None:
    text, video, image = _vics(random.Random(22))
    summary = import_list(engine, get_importer("vics"), io.StringIO(text), source="v", version="1")
    assert summary.imported == 8, summary
    assert load_set(engine, "video-sha256") == [video["SHA256"]]
    assert load_set(engine, "video-md5") == [video["MD5"]]
    assert load_set(engine, "sha256") == [image["SHA256"]]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT label, media FROM list_entry").all()
    assert sorted({tuple(r) for r in rows}) == [("i1", "image"), ("v1", "video")]
