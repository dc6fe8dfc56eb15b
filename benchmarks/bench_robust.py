"""Issue 18: copies that evade PDQ. Recall per copy kind, false matches on a large benign set,
CPU per image and index memory: PDQ alone against LIBRA's defaults (dihedral + trimmed +
region hashes), and against a keypoint stage (ORB + RANSAC) for crops, in one run.

    .venv/bin/python benchmarks/bench_robust.py [--listed 300] [--copies 100]
        [--benign 10000] [--orb-benign 1000] [--index-size 100000] [--json out.json]

Listed images: --listed generated benign images (libra.demo.imagegen), hashed the way an agency
builds its list (`libra hash --regions`). Copies: for each kind, --copies listed images changed
by libra.demo.imagegen.evasive_copy (plus the mild kinds PDQ always found), re-encoded as JPEG.
Benign set (never listed): --benign images = generated images of other seeds (a tenth of them
given a uniform border or letterbox, so that trimming runs on benign images too) plus every
image scikit-image ships (its data directory, nothing downloaded), their dihedral transforms
and random crops of them. A false match is a benign image matching any listed entry.
ORB (opencv-python-headless) is run on the crop kinds and on --orb-benign benign images only:
a brute-force descriptor search over the whole list per query is what keeps it slow.
Memory and lookup cost are measured on an index of --index-size PDQ entries (random codes,
the listed ones among them), each with its region hashes, as a node would hold it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# As the function's container runs (Dockerfile.function): one BLAS thread. Threaded BLAS on a
# shared machine spins, which inflates CPU time per image several-fold.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from libra.demo import imagegen
from node.matching.matcher import MatchIndex, Method
from protocol.hashes import HashFamily
from protocol.models import ImageHashes
from worker_function.hashing import PDQ_REDUCE_TO, hash_image
from worker_function.regions import REGIONS
from worker_function.trim import border_box

KINDS = (
    "requality",
    "resize",
    "mirror",
    "rotate90",
    "rotate180",
    "rotate270",
    "border",
    "letterbox",
    "crop5",
    "crop15",
    "crop15-offcentre",  # 15 % off the left and top only: not what the regions cover
)


def _encode(image: Image.Image, quality: int = 85) -> bytes:
    return imagegen.encode(image.convert("RGB"), imagegen.JPEG, quality=quality)


def make_copy(original: Image.Image, kind: str, rng: np.random.Generator) -> bytes:
    if kind == "requality":
        return _encode(original, quality=int(rng.integers(30, 60)))
    if kind == "resize":
        factor = float(rng.uniform(0.4, 0.9))
        size = (round(original.width * factor), round(original.height * factor))
        return _encode(original.resize(size, Image.Resampling.LANCZOS))
    if kind == "crop15-offcentre":
        w, h = original.size
        return _encode(original.crop((round(w * 0.15), round(h * 0.15), w, h)))
    copy = imagegen.evasive_copy(original, imagegen.VariantKind(kind), rng)
    copy.thumbnail(PDQ_REDUCE_TO)
    return _encode(copy)


def generated(seed: int, rng: np.random.Generator) -> Image.Image:
    width, height = (int(v) for v in rng.integers(240, 513, size=2))
    return imagegen.generate_image((20261204, seed), width, height)


def shipped_images() -> list[Image.Image]:
    """Every image file scikit-image ships in its data directory (no download)."""
    try:
        import skimage
    except ImportError:
        return []
    directory = Path(skimage.__file__).parent / "data"
    out = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in (".png", ".jpg", ".gif", ".tif"):
            try:
                with Image.open(path) as img:
                    out.append(img.convert("RGB"))
            except OSError:
                continue  # a format Pillow cannot read (one multi-page TIFF)
    faces = np.load(directory / "lfw_subset.npy")
    out.extend(Image.fromarray((f * 255).astype(np.uint8)).convert("RGB") for f in faces)
    return out


def benign_set(n: int, rng: np.random.Generator) -> tuple[list[bytes], dict[str, int]]:
    shipped = shipped_images()
    images: list[bytes] = []
    for img in shipped:
        images.extend(_encode(img.transpose(t)) for t in Image.Transpose)
        images.append(_encode(img))
    big = [img for img in shipped if min(img.size) >= 128]
    crops = 0
    while big and crops < n // 4:
        img = big[crops % len(big)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.3, 0.9)), int(h * rng.uniform(0.3, 0.9))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        images.append(_encode(img.crop((x, y, x + cw, y + ch))))
        crops += 1
    from_package = len(images)
    seed = 1_000_000
    while len(images) < n:
        img = generated(seed, rng)
        if seed % 10 == 0:  # some benign images have borders too
            kind = imagegen.VariantKind.BORDER if seed % 20 else imagegen.VariantKind.LETTERBOX
            img = imagegen.evasive_copy(img, kind, rng)
            img.thumbnail(PDQ_REDUCE_TO)
        images.append(_encode(img))
        seed += 1
    return images, {
        "scikit-image (files, transforms, crops)": from_package,
        "generated": len(images) - from_package,
    }


def pdq_alone(hashes: ImageHashes) -> ImageHashes:
    """What PDQ alone (issue 18's baseline) queries: the image's own hash only."""
    return hashes.model_copy(
        update={"pdq_dihedral": None, "pdq_trimmed": None, "pdq_trimmed_quality": None}
    )


def no_dihedral(hashes: ImageHashes) -> ImageHashes:
    """The queries with ``match.dihedral`` off: no variants (of the image or its trimmed part)."""
    trimmed = hashes.pdq_trimmed[:1] if hashes.pdq_trimmed else None
    return hashes.model_copy(update={"pdq_dihedral": None, "pdq_trimmed": trimmed})


@dataclass
class Timer:
    """CPU seconds (process time: not wall clock, so a loaded machine does not skew it)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.process_time()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.process_time() - start


# --------------------------------------------------------------------------- ORB


class OrbStage:
    """Keypoints (ORB, 500 per image on the 512 px luminance) of every listed image; a query
    matches the listed image with most ratio-test matches if a RANSAC similarity fit over
    them keeps at least ``min_inliers`` inliers."""

    def __init__(self, listed: Sequence[bytes], min_inliers: int = 20) -> None:
        import cv2

        self.cv2 = cv2
        self.orb = cv2.ORB_create(nfeatures=500)  # type: ignore[attr-defined]
        self.min_inliers = min_inliers
        self.points: list[npt.NDArray[np.float32]] = []
        descriptors, owners = [], []
        for n, data in enumerate(listed):
            pts, desc = self.features(data)
            self.points.append(pts)
            if desc is not None:
                descriptors.append(desc)
                owners.extend([n] * len(desc))
        self.descriptors = np.vstack(descriptors)
        self.owners = np.asarray(owners)
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in self.points])])
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def nbytes(self) -> int:
        return int(self.descriptors.nbytes + sum(p.nbytes for p in self.points))

    def features(self, data: bytes) -> tuple[npt.NDArray[np.float32], Any]:
        img = Image.open(io.BytesIO(data)).convert("L")
        img.thumbnail(PDQ_REDUCE_TO)
        keypoints, desc = self.orb.detectAndCompute(np.asarray(img), None)
        return np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2), desc

    def match(self, data: bytes) -> int | None:
        pts, desc = self.features(data)
        if desc is None or len(desc) < 8:
            return None
        pairs = self.matcher.knnMatch(desc, self.descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
        if not good:
            return None
        votes = np.bincount(self.owners[[m.trainIdx for m in good]], minlength=len(self.points))
        best = int(votes.argmax())
        mine = [m for m in good if self.owners[m.trainIdx] == best]
        if len(mine) < self.min_inliers:
            return None
        src = pts[[m.queryIdx for m in mine]]
        dst = self.points[best][[m.trainIdx - self.offsets[best] for m in mine]]
        _model, inliers = self.cv2.estimateAffinePartial2D(
            src, dst, method=self.cv2.RANSAC, ransacReprojThreshold=4.0
        )
        if inliers is None or int(inliers.sum()) < self.min_inliers:
            return None
        return best


# --------------------------------------------------------------------------- run


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--listed", type=int, default=300)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--benign", type=int, default=10_000)
    parser.add_argument("--orb-benign", type=int, default=1_000)
    parser.add_argument("--index-size", type=int, default=100_000)
    parser.add_argument("--no-orb", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(18)
    timer = Timer()
    report: dict[str, Any] = {"regions_per_entry": len(REGIONS)}

    # The list, built as an agency builds it.
    originals = [generated(seed, rng) for seed in range(args.listed)]
    listed_bytes = [_encode(img, quality=92) for img in originals]
    listed = [hash_image(b, regions=True).hashes for b in listed_bytes]
    index = MatchIndex([(n, "pdq", h.pdq) for n, h in enumerate(listed)])
    index.add_regions((n, h.pdq_regions or []) for n, h in enumerate(listed))
    plain = MatchIndex([(n, "pdq", h.pdq) for n, h in enumerate(listed)])

    # Recall per kind: PDQ alone (the image's own hash) against LIBRA's defaults.
    recall: dict[str, dict[str, Any]] = {}
    copies: dict[str, list[tuple[int, bytes]]] = {}
    for kind in KINDS:
        chosen = [int(i) for i in rng.permutation(args.listed)[: args.copies]]
        data = [make_copy(originals[i], kind, rng) for i in chosen]
        copies[kind] = list(zip(chosen, data, strict=True))
        hashes = [hash_image(d, dihedral=True).hashes for d in data]
        libra = index.match_many(hashes)
        alone = plain.match_many([pdq_alone(h) for h in hashes])
        methods: dict[str, int] = {}
        for want, found in zip(chosen, libra, strict=True):
            hit = next((m for m in found if m.entry_id == want), None)
            if hit is not None:
                methods[hit.method.value] = methods.get(hit.method.value, 0) + 1
        hits_alone = sum(
            any(m.entry_id == w for m in f) for w, f in zip(chosen, alone, strict=True)
        )
        recall[kind] = {
            "pdq_alone": hits_alone / len(chosen),
            "libra": sum(methods.values()) / len(chosen),
            "by_method": methods,
        }
    report["recall"] = recall

    # False matches on the benign set, per method.
    benign, composition = benign_set(args.benign, rng)
    report["benign"] = {"images": len(benign), "composition": composition}
    false: dict[str, int] = {m.value: 0 for m in Method}
    false_alone = 0
    trimmed_benign = 0
    for start in range(0, len(benign), 500):
        batch = benign[start : start + 500]
        with timer("hash (dihedral + trim)"):
            hashes = [hash_image(d, dihedral=True).hashes for d in batch]
        trimmed_benign += sum(h.pdq_trimmed is not None for h in hashes)
        alone_queries = [pdq_alone(h) for h in hashes]
        off_queries = [no_dihedral(h) for h in hashes]
        with timer("match libra"):
            found_libra = index.match_many(hashes)
        with timer("match pdq alone"):
            found_alone = plain.match_many(alone_queries)
        with timer("match libra without dihedral"):
            index.match_many(off_queries)
        for found in found_libra:
            for m in found[:1]:
                false[m.method.value] += 1
        false_alone += sum(bool(f) for f in found_alone)
        # What the old dihedral added (pdqhash's 8 hashes on the materialised thumbnail), and
        # what border detection costs, on a sample.
        for d in batch[:100]:
            thumb = _thumbnail(d)
            with timer("old dihedral extra"):
                _old_dihedral(thumb)
            with timer("border detection"):
                border_box(thumb)
    report["false_matches"] = {
        "pdq_alone": false_alone,
        "libra_by_method": false,
        "libra_total": sum(false.values()),
        "benign_with_trimmed_hash": trimmed_benign,
    }
    n = len(benign)
    sampled = min(n, 100 * ((n + 499) // 500))
    seconds = timer.seconds
    report["cpu_ms_per_image"] = {
        "hash_image, all hashes (dihedral from one DCT, trimmed)": 1000
        * seconds["hash (dihedral + trim)"]
        / n,
        "of which border detection": 1000 * seconds["border detection"] / sampled,
        "old dihedral's extra (pdqhash.compute_dihedral on the thumbnail)": 1000
        * seconds["old dihedral extra"]
        / sampled,
        f"match, libra ({args.listed} listed)": 1000 * seconds["match libra"] / n,
        f"match, libra with match.dihedral off ({args.listed} listed)": 1000
        * seconds["match libra without dihedral"]
        / n,
        f"match, pdq alone ({args.listed} listed)": 1000 * seconds["match pdq alone"] / n,
    }

    # Cost at node scale: a large index with region hashes.
    report["index"] = index_cost(args.index_size, listed, benign[:2000], rng)

    if not args.no_orb:
        report["orb"] = orb_compare(listed_bytes, copies, benign[: args.orb_benign])
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


def _thumbnail(data: bytes) -> npt.NDArray[np.uint8]:
    img = Image.open(io.BytesIO(data)).convert("L")
    img.thumbnail(PDQ_REDUCE_TO)
    return np.asarray(img, dtype=np.uint8)


def _old_dihedral(pixels: npt.NDArray[np.uint8]) -> None:
    pdqhash.compute_dihedral(np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2)))


def _random_pdq(rng: np.random.Generator) -> str:
    return f"{int.from_bytes(rng.bytes(32), 'big'):064x}"


def index_cost(
    size: int, listed: list[ImageHashes], queries: list[bytes], rng: np.random.Generator
) -> dict[str, Any]:
    values = [h.pdq for h in listed] + [_random_pdq(rng) for _ in range(size - len(listed))]
    full = MatchIndex([(n, "pdq", v) for n, v in enumerate(values)])
    plain = MatchIndex([(n, "pdq", v) for n, v in enumerate(values)])
    regions = [(n, h.pdq_regions or []) for n, h in enumerate(listed)]
    for n in range(len(listed), size):
        regions.append((n, [_random_pdq(rng) for _ in REGIONS]))
    full.add_regions(regions)
    hashes = [hash_image(d, dihedral=True).hashes for d in queries]
    alone_queries = [pdq_alone(h) for h in hashes]
    off_queries = [no_dihedral(h) for h in hashes]
    timer = Timer()
    with timer("libra"):
        full.match_many(hashes)
    with timer("off"):
        full.match_many(off_queries)
    with timer("alone"):
        plain.match_many(alone_queries)
    return {
        "entries": size,
        "region_codes": len(full.region_table),
        "pdq_table_bytes": full.hamming_tables[HashFamily.PDQ].nbytes,
        "region_table_bytes": full.region_table.nbytes,
        "match_ms_per_image_libra": 1000 * timer.seconds["libra"] / len(hashes),
        "match_ms_per_image_libra_dihedral_off": 1000 * timer.seconds["off"] / len(hashes),
        "match_ms_per_image_pdq_alone": 1000 * timer.seconds["alone"] / len(hashes),
        "pdq_queries_per_image_libra": sum(
            len(h.pdq_dihedral or [h.pdq]) + len(h.pdq_trimmed or []) for h in hashes
        )
        / len(hashes),
    }


def orb_compare(
    listed: list[bytes], copies: dict[str, list[tuple[int, bytes]]], benign: list[bytes]
) -> dict[str, Any]:
    try:
        stage = OrbStage(listed)
    except ImportError:
        return {"skipped": "opencv-python-headless is not installed"}
    out: dict[str, Any] = {"index_bytes": stage.nbytes(), "entries": len(listed)}
    for kind in ("crop5", "crop15", "crop15-offcentre", "rotate90", "border"):
        found = [stage.match(d) == want for want, d in copies[kind]]
        out[f"recall_{kind}"] = sum(found) / len(found)
    false = 0
    start = time.process_time()
    for d in benign:
        false += stage.match(d) is not None
    out["false_matches"] = false
    out["benign"] = len(benign)
    out["cpu_ms_per_image"] = 1000 * (time.process_time() - start) / max(1, len(benign))
    return out


if __name__ == "__main__":
    main()
