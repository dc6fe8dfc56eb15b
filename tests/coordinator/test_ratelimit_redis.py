"""Rate-limit buckets shared through Redis by several coordinator processes (real Redis)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from coordinator.errors import RateLimited
from coordinator.ratelimit import NodeRateLimiter, RedisRateLimiter, make_rate_limiter

REDIS_URL = os.environ.get("LIBRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix() -> Iterator[str]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required with CI=true: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    name = f"libra-test:ratelimit:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}:*"))
    if keys:
        client.delete(*keys)


def test_two_processes_share_one_bucket(prefix: str) -> None:
    # Two limiters stand for two coordinator processes: the burst is shared, not doubled.
    first = RedisRateLimiter(REDIS_URL, rate=0.001, burst=3, prefix=prefix)
    second = RedisRateLimiter(REDIS_URL, rate=0.001, burst=3, prefix=prefix)
    first.check("node-a")
    second.check("node-a")
    first.check("node-a")
    with pytest.raises(RateLimited, match="node-a exceeds"):
        second.check("node-a")
    second.check("node-b")  # buckets are per node
    ttl = redis.Redis.from_url(REDIS_URL).ttl(f"{prefix}:node-a")
    assert 0 < ttl <= 3 / 0.001 + 60


def test_bucket_refills_with_the_server_clock(prefix: str) -> None:
    limiter = RedisRateLimiter(REDIS_URL, rate=1000.0, burst=1, prefix=prefix)
    limiter.check("node-a")
    refused = 0
    for _ in range(50):  # 1,000 tokens/s: some calls land after a refill, some do not
        try:
            limiter.check("node-a")
        except RateLimited:
            refused += 1
    assert refused < 50


def test_unreachable_redis_falls_back_to_local_buckets() -> None:
    # Port 1 on loopback: nothing listens; the limiter still limits, in process.
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", rate=0.001, burst=2)
    limiter.check("node-a")
    limiter.check("node-a")
    with pytest.raises(RateLimited):
        limiter.check("node-a")


def test_factory_picks_the_backend() -> None:
    assert isinstance(make_rate_limiter(None, 1.0, 1), NodeRateLimiter)
    assert isinstance(make_rate_limiter(REDIS_URL, 1.0, 1), RedisRateLimiter)
