"""Per-host politeness: concurrency, minimum delay, robots Crawl-delay/Request-rate, back-off.

One ``HostPolicy`` per host name. Before each request ``acquire()`` waits for a free slot of
the host (``per_host_concurrency``) and until the host's next allowed start time. After each
answer ``release()`` sets the next start time from:

- the larger of ``min_delay_s``, the robots.txt ``Crawl-delay`` and the ``Request-rate`` interval
  for our agent (capped at ``max_crawl_delay_s``: a hostile robots.txt cannot stall a crawl);
- an adaptive back-off that doubles (from ``backoff_base_s`` up to ``max_backoff_s``) on 429, 503
  and on answers slower than ``slow_response_s``, and halves again on each normal answer;
- ``Retry-After`` (seconds or an HTTP date) of a 429/503, capped at ``max_backoff_s``.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Politeness:
    per_host_concurrency: int = 1
    min_delay_s: float = 0.0
    max_crawl_delay_s: float = 30.0
    backoff_base_s: float = 1.0
    max_backoff_s: float = 120.0
    slow_response_s: float = 5.0
    retries: int = 2  # extra attempts after 429/503/timeout/connection errors
    obey_crawl_delay: bool = True


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts e.g. superscripts
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - current).total_seconds())


def robots_delay(parser: Any, user_agent: str) -> float:
    """Crawl-delay or Request-rate interval of a protego parser for our agent (0 if none)."""
    if parser is None or not hasattr(parser, "crawl_delay"):
        return 0.0
    delay = parser.crawl_delay(user_agent) or 0.0
    rate = parser.request_rate(user_agent)
    if rate is not None and rate.requests > 0:
        delay = max(delay, rate.seconds / rate.requests)
    return float(delay)


class HostPolicy:
    def __init__(self, policy: Politeness, clock: Any = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._slots = asyncio.Semaphore(policy.per_host_concurrency)
        self._next_start = 0.0
        self.robots_delay_s = 0.0
        self.backoff_s = 0.0
        self.throttled = 0  # 429/503 answers seen

    @property
    def base_delay_s(self) -> float:
        robots = self.robots_delay_s if self.policy.obey_crawl_delay else 0.0
        return min(max(self.policy.min_delay_s, robots), self.policy.max_crawl_delay_s)

    async def acquire(self) -> None:
        await self._slots.acquire()
        while (wait := self._next_start - self._clock()) > 0:
            await asyncio.sleep(wait)
        # Reserve the start time now so that concurrent slots are spaced too.
        self._next_start = self._clock() + self.base_delay_s

    def release(self, status: int | None, elapsed_s: float, retry_after: str | None) -> None:
        """Account for one answer (status None: a network error or timeout)."""
        policy = self.policy
        extra = 0.0
        if status in (429, 503) or status is None or elapsed_s > policy.slow_response_s:
            if status in (429, 503):
                self.throttled += 1
            self.backoff_s = min(
                policy.max_backoff_s, max(policy.backoff_base_s, self.backoff_s * 2)
            )
            waited = parse_retry_after(retry_after) if status in (429, 503) else None
            if waited is not None:
                extra = min(waited, policy.max_backoff_s)
        else:
            self.backoff_s = self.backoff_s / 2 if self.backoff_s > 0.01 else 0.0
        start = self._clock() + max(self.base_delay_s, self.backoff_s, extra)
        self._next_start = max(self._next_start, start)
        self._slots.release()
