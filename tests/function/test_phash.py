"""pHash without scipy (worker_function/phash.py) equals imagehash.phash bit for bit, ties
included, and a normal image is hashed without importing scipy (issue 17: start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from tests.function import helpers as h
from worker_function.phash import phash_hex

REPO = Path(__file__).resolve().parents[2]


def _tie_images() -> list[Image.Image]:
    """Images whose low DCT coefficients tie with their median: rounding decides those bits."""
    images = [Image.new("L", (size, size), 128) for size in (1, 7, 32, 64)]
    images.append(Image.new("RGB", (40, 80), (10, 200, 30)))
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    images += [Image.fromarray(ramp), Image.fromarray(ramp + ramp.T)]
    checker = np.tile(np.array([[0, 255], [255, 0]], dtype=np.uint8), (32, 32))
    images.append(Image.fromarray(checker))
    noise = np.random.default_rng(3).integers(0, 256, (48, 48), dtype=np.uint8)
    images.append(Image.fromarray(np.maximum(noise, noise.T)))  # symmetric
    images += [Image.linear_gradient("L"), Image.radial_gradient("L")]
    return images


def test_equal_on_generated_photos() -> None:
    for seed in range(40):
        image = h.generated_image(seed, (96 + seed * 7, 64 + seed * 3))
        assert phash_hex(image) == str(imagehash.phash(image))


@pytest.mark.parametrize("index", range(len(_tie_images())))
def test_equal_where_bits_tie(index: int) -> None:
    image = _tie_images()[index]
    assert phash_hex(image) == str(imagehash.phash(image))


@settings(max_examples=150, deadline=None)
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 70), st.integers(1, 70)),
        elements=st.sampled_from([0, 1, 127, 128, 254, 255]) | st.integers(0, 255),
    )
)
def test_equal_on_any_pixels(pixels: np.ndarray) -> None:
    image = Image.fromarray(pixels)
    assert phash_hex(image) == str(imagehash.phash(image))


def test_a_normal_image_loads_no_scipy(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(h.encode(h.generated_image(9), "JPEG"))
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from worker_function.hashing import hash_image\n"
        f"hash_image(Path({str(path)!r}).read_bytes())\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []
