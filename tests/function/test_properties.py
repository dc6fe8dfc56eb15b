"""Property: on any input, hash_image returns a digest or raises an ImageError, nothing else."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.function import helpers as h
from worker_function.errors import ImageError
from worker_function.hashing import DecodeLimits, ImageDigest, hash_image

# Pillow warns about the corrupt data we feed it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
LIMITS = DecodeLimits(max_pixels=4_000_000)


@cache
def sample(fmt: str) -> bytes:
    return h.encode(h.generated_image(41, (64, 48)), fmt)


def outcome(data: bytes) -> ImageDigest | ImageError:
    try:
        return hash_image(data, limits=LIMITS)
    except ImageError as exc:  # anything else fails the test
        assert exc.code in {"not_an_image", "unsupported_format", "pixel_limit", "decode_failed"}
        return exc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    outcome(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FORMATS), st.binary(max_size=2048))
def test_valid_magic_random_tail(fmt: str, tail: bytes) -> None:
    outcome(sample(fmt)[:16] + tail)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(FORMATS),
    st.floats(0, 1),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8),
)
def test_truncated_and_corrupted_images(
    fmt: str, keep: float, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(sample(fmt))
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    outcome(bytes(data[: int(keep * len(data))]))
