"""Per-node token buckets, in memory (one coordinator process; state resets on restart)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import RateLimited


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
                raise RateLimited(f"node {node_id} exceeds its report rate; retry in {wait:.1f} s")
            self._buckets[node_id] = (tokens - 1.0, now)
