"""Who may use the function: per-caller Ed25519 request signatures and per-caller rate limits.

The function fetches arbitrary URLs, so an unauthenticated function would be an open proxy.
Every request carries ``protocol.request_auth`` headers; the signature covers method, path,
caller, timestamp, a random nonce and the body's SHA-256. Stale timestamps are refused, and so is
a (caller, nonce) pair seen before within the clock-skew window (a replay). The nonce store is
bounded: entries expire with the window, and a full store refuses new requests (503) rather than
forgetting a live nonce, which would reopen replays.
"""

from __future__ import annotations

import base64
import binascii
import heapq
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
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    NONCE_PATTERN,
    SIGNED_HEADERS,
    signing_message,
)

from .errors import FunctionError


class Unauthenticated(FunctionError):
    """Missing, malformed, stale, replayed or wrongly signed request (401)."""

    code = "unauthenticated"
    http_status = 401


class ReplayedRequest(Unauthenticated):
    """A validly signed request whose (caller, nonce) was already accepted (401)."""

    code = "replayed_request"


class NonceStoreFull(FunctionError):
    """The replay store is at its cap; answered like overload, with a Retry-After (503)."""

    code = "overloaded"
    http_status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name.lower()) or headers.get(name)


def require_signature_headers(headers: Mapping[str, str]) -> None:
    """Unauthenticated unless every signature header is present (checked before any body is
    read, so an unsigned request costs no memory)."""
    if not all(_header(headers, name) for name in SIGNED_HEADERS):
        raise Unauthenticated(f"request must be signed ({', '.join(SIGNED_HEADERS)} headers)")


@dataclass
class Authenticator:
    """Checks signed requests. Thread-safe; remembers each accepted (caller, nonce) until its
    timestamp leaves the skew window, at most ``max_nonces`` of them."""

    keys: Mapping[str, VerifyKey]
    max_skew_seconds: float = 300.0
    max_nonces: int = 100_000
    clock: Callable[[], float] = time.time
    _seen: set[bytes] = field(default_factory=set, repr=False)
    _expiry: list[tuple[float, bytes]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> str:
        """The authenticated caller's name, or Unauthenticated / ReplayedRequest /
        UnknownCaller / NonceStoreFull."""
        require_signature_headers(headers)
        caller = _header(headers, HEADER_CALLER) or ""
        stamp = _header(headers, HEADER_TIMESTAMP) or ""
        nonce = _header(headers, HEADER_NONCE) or ""
        sig_text = _header(headers, HEADER_SIGNATURE) or ""
        if not CALLER_PATTERN.match(caller):
            raise Unauthenticated(f"{HEADER_CALLER} is not a valid caller name")
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            raise Unauthenticated(f"{HEADER_TIMESTAMP} must be integer Unix seconds")
        if not NONCE_PATTERN.match(nonce):
            raise Unauthenticated(f"{HEADER_NONCE} must be 32 lowercase hex digits")
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
            key.verify(signing_message(method, path, caller, stamp, nonce, body), signature)
        except BadSignatureError:
            raise Unauthenticated("signature does not verify for this request") from None
        # Only verified requests reach the store: strangers cannot fill it.
        self._remember(caller, nonce, int(stamp) + self.max_skew_seconds, now)
        return caller

    def _remember(self, caller: str, nonce: str, expires: float, now: float) -> None:
        key = caller.encode("ascii") + b"\0" + bytes.fromhex(nonce)
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                self._seen.discard(heapq.heappop(self._expiry)[1])
            if key in self._seen:
                raise ReplayedRequest("this nonce was already used by this caller (replay)")
            if len(self._seen) >= self.max_nonces:
                wait = math.ceil(self._expiry[0][0] - now) if self._expiry else 1
                raise NonceStoreFull(
                    f"the replay store holds {self.max_nonces} live nonces", max(1, wait)
                )
            self._seen.add(key)
            heapq.heappush(self._expiry, (expires, key))

    @property
    def live_nonces(self) -> int:
        return len(self._seen)


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

    def take(self, caller: str, cost: int = 1) -> None:
        """Spend ``cost`` tokens of ``caller`` (one per analysis: a batch pays for each item) or
        raise RateLimited with a Retry-After; nothing is spent when refused."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(caller, None) or _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[caller] = bucket  # most recently used last
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return
            wait = math.ceil((cost - bucket.tokens) / self.rate)
        raise RateLimited(f"rate limit of {self.rate:g} analyses/s exceeded", max(1, wait))
