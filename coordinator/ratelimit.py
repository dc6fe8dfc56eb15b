"""Per-node token buckets: in memory (one coordinator process; state resets on restart), or
in Redis when ``redis_url`` is set, so several coordinator processes share them."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from .errors import RateLimited

log = logging.getLogger(__name__)


class NodeRateLimiter:
    """``check(node_id)`` takes one token from the node's bucket or raises RateLimited."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # node -> (tokens, last refill)
        # Ingest runs in a thread pool; the lock keeps a bucket's read-modify-write atomic.
        self._lock = threading.Lock()

    def check(self, node_id: str) -> None:
        if self._rate <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(node_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[node_id] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
                raise RateLimited(
                    f"node {node_id} exceeds its report rate; retry in {wait:.1f} s",
                    retry_after=math.ceil(wait),
                )
            self._buckets[node_id] = (tokens - 1.0, now)


# Token bucket in one Redis hash per node, updated atomically by a script that reads the
# server's clock: every coordinator process sees the same bucket and the same time.
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    """The same per-node token buckets, shared by every coordinator process through Redis.

    If Redis cannot be reached the check falls back to this process's own buckets (logged):
    rate limiting protects the coordinator, it must not stop ingest.
    """

    def __init__(self, url: str, rate: float, burst: int, prefix: str = "libra:ratelimit") -> None:
        import redis

        self._rate = rate
        self._burst = burst
        self._prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._client.register_script(_BUCKET_SCRIPT)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._fallback = NodeRateLimiter(rate, burst)

    def check(self, node_id: str) -> None:
        if self._rate <= 0:
            return
        try:
            allowed, tokens = self._script(
                keys=[f"{self._prefix}:{node_id}"], args=[self._rate, self._burst]
            )
        except self._errors as exc:
            log.warning("rate limit state in Redis unavailable (%s); using local buckets", exc)
            self._fallback.check(node_id)
            return
        if int(allowed) != 1:
            wait = (1.0 - float(tokens)) / self._rate
            raise RateLimited(
                f"node {node_id} exceeds its report rate; retry in {wait:.1f} s",
                retry_after=math.ceil(wait),
            )


def make_rate_limiter(
    redis_url: str | None, rate: float, burst: int
) -> NodeRateLimiter | RedisRateLimiter:
    """Redis-backed when a URL is configured (several processes), else in process."""
    if redis_url:
        return RedisRateLimiter(redis_url, rate, burst)
    return NodeRateLimiter(rate, burst)
