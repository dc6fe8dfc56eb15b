"""Who may use the function: per-caller Ed25519 request signatures and per-caller rate limits.

The function fetches arbitrary URLs, so an unauthenticated function would be an open proxy.
Every request carries ``protocol.request_auth`` headers; the signature covers method, path,
caller, timestamp and the body's SHA-256. Stale timestamps and exact replays are refused.
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from protocol.keys import decode_public_key
from protocol.request_auth import (
    CALLER_PATTERN,
    HEADER_CALLER,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    signing_message,
)

from .errors import FunctionError


class Unauthenticated(FunctionError):
    """Missing, malformed, stale, replayed or wrongly signed request (401)."""

    code = "unauthenticated"
    http_status = 401


class UnknownCaller(FunctionError):
    """A well-formed request from a caller that is not in ``authorized_keys`` (403)."""

    code = "forbidden_caller"
    http_status = 403


class RateLimited(FunctionError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_authorized_keys(raw: Mapping[str, str]) -> dict[str, VerifyKey]:
    """``{caller: base64 Ed25519 public key}`` -> verify keys; ValueError names the bad entry."""
    keys: dict[str, VerifyKey] = {}
    for caller, text in raw.items():
        if not CALLER_PATTERN.match(caller):
            raise ValueError(f"authorized_keys: caller name {caller!r} is not valid")
        try:
            keys[caller] = decode_public_key(text)
        except ValueError as exc:
            raise ValueError(f"authorized_keys[{caller!r}]: {exc}") from None
    return keys


@dataclass
class Authenticator:
    """Checks signed requests. Thread-safe; keeps only recent signatures (replay window)."""

    keys: Mapping[str, VerifyKey]
    max_skew_seconds: float = 300.0
    clock: Callable[[], float] = time.time
    _seen: OrderedDict[bytes, float] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> str:
        """The authenticated caller's name, or Unauthenticated / UnknownCaller."""
        caller = headers.get(HEADER_CALLER.lower()) or headers.get(HEADER_CALLER)
        stamp = headers.get(HEADER_TIMESTAMP.lower()) or headers.get(HEADER_TIMESTAMP)
        sig_text = headers.get(HEADER_SIGNATURE.lower()) or headers.get(HEADER_SIGNATURE)
        if not caller or not stamp or not sig_text:
            raise Unauthenticated(
                f"request must be signed ({HEADER_CALLER}, {HEADER_TIMESTAMP}, "
                f"{HEADER_SIGNATURE} headers)"
            )
        if not CALLER_PATTERN.match(caller):
            raise Unauthenticated(f"{HEADER_CALLER} is not a valid caller name")
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            raise Unauthenticated(f"{HEADER_TIMESTAMP} must be integer Unix seconds")
        now = self.clock()
        if abs(now - int(stamp)) > self.max_skew_seconds:
            raise Unauthenticated(
                f"request timestamp is more than {self.max_skew_seconds:g} s from the "
                "function's clock"
            )
        try:
            signature = base64.b64decode(sig_text, validate=True)
        except (binascii.Error, ValueError):
            raise Unauthenticated(f"{HEADER_SIGNATURE} is not base64") from None
        if len(signature) != 64:
            raise Unauthenticated(f"{HEADER_SIGNATURE} must be a 64-byte Ed25519 signature")
        key = self.keys.get(caller)
        if key is None:
            raise UnknownCaller(f"caller {caller!r} is not authorised to use this function")
        try:
            key.verify(signing_message(method, path, caller, stamp, body), signature)
        except BadSignatureError:
            raise Unauthenticated("signature does not verify for this request") from None
        self._refuse_replay(signature, now)
        return caller

    def _refuse_replay(self, signature: bytes, now: float) -> None:
        # An Ed25519 signature is deterministic per message, so it identifies the request.
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now:
                self._seen.popitem(last=False)
            if signature in self._seen:
                raise Unauthenticated("this exact signed request was already used (replay)")
            self._seen[signature] = now + 2 * self.max_skew_seconds


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per caller: ``rate`` requests per second, bursts of ``burst``."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    max_callers: int = 10_000
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, caller: str) -> None:
        """Spend one token of ``caller`` or raise RateLimited with a Retry-After."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(caller, None) or _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[caller] = bucket  # most recently used last
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return
            wait = math.ceil((1 - bucket.tokens) / self.rate)
        raise RateLimited(f"rate limit of {self.rate:g} requests/s exceeded", max(1, wait))
