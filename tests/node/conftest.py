"""Shared helpers for the node tests: a fresh database, hash and result builders, GeoIP files.

No images are involved here: the hashes are random hex strings from seeded generators.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPSet
from sqlalchemy.engine import Engine

from node.db import make_engine
from protocol.models import HashResult, ImageHashes


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}")
    yield eng
    eng.dispose()


def rand_hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def flip_bits(value: str, positions: list[int]) -> str:
    """Flip the given bit positions of a hex value (for near-duplicates)."""
    bits = len(value) * 4
    number = int(value, 16)
    for position in positions:
        number ^= 1 << position
    return f"{number:0{bits // 4}x}"


def image_hashes(rng: random.Random, **override: object) -> ImageHashes:
    values: dict[str, object] = {
        "md5": rand_hex(rng, 128),
        "sha1": rand_hex(rng, 160),
        "sha256": rand_hex(rng, 256),
        "pdq": rand_hex(rng, 256),
        "pdq_quality": 100,
        "phash": rand_hex(rng, 64),
        "dhash": rand_hex(rng, 64),
    }
    values.update(override)
    return ImageHashes.model_validate(values)


def hash_result(
    url: str,
    hashes: ImageHashes,
    server_ip: str | None = "127.0.1.10",
    final_url: str | None = None,
) -> HashResult:
    return HashResult(
        url=url,
        final_url=final_url or url,
        server_ip=server_ip,
        format="PNG",
        width=64,
        height=64,
        bytes=1234,
        hashes=hashes,
    )


def write_geoip(directory: Path) -> tuple[Path, Path]:
    """A tiny country and ASN database covering two loopback 'hosters'."""
    country = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    country.insert_network(IPSet(["127.0.1.0/24"]), {"country": {"iso_code": "DE"}})
    country.insert_network(IPSet(["127.0.2.0/24"]), {"country": {"iso_code": "NL"}})
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    asn.insert_network(
        IPSet(["127.0.1.0/24"]),
        {
            "autonomous_system_number": MmdbU32(64500),
            "autonomous_system_organization": "Hoster A",
        },
    )
    asn.insert_network(
        IPSet(["127.0.2.0/24"]),
        {
            "autonomous_system_number": MmdbU32(64501),
            "autonomous_system_organization": "Hoster B",
        },
    )
    country_path = directory / "country.mmdb"
    asn_path = directory / "asn.mmdb"
    country.to_db_file(str(country_path))
    asn.to_db_file(str(asn_path))
    return country_path, asn_path


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the local Redis, its keys deleted afterwards; skips without Redis
    (fails under CI=true, where Redis is required)."""
    import os
    import uuid

    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required with CI=true: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    prefix = f"libra-test:{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)
