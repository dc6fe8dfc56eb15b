"""Signed requests from a node to the remote-hash function (Ed25519 over the request).

The node signs ``method, path, caller, timestamp, nonce, SHA-256(body)`` under a fixed domain
tag, so a signature can never be mistaken for a DSSE report signature, cannot be moved to another
body or route, and goes stale after the function's clock-skew window. The random nonce makes two
identical requests in the same second distinct, so only a true replay is refused.
The exact bytes are specified in docs/protocol.md §5, with a test vector in
protocol/vectors/function-request-v1.json. The function keeps a per-caller public key (its
``authorized_keys``); callers are named, not identified by network address.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from nacl.signing import SigningKey

DOMAIN = b"libra-function-request/v1"
HEADER_CALLER = "X-Libra-Caller"
HEADER_TIMESTAMP = "X-Libra-Timestamp"
HEADER_SIGNATURE = "X-Libra-Signature"
HEADER_NONCE = "X-Libra-Nonce"
# Every header a signed request must carry (checked before the body is read).
SIGNED_HEADERS = (HEADER_CALLER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
# 16 random bytes as 32 lowercase hex digits.
NONCE_PATTERN = re.compile(r"^[0-9a-f]{32}$")
# Caller names: the node ids of NodeSettings, plus upper case and dots for other deployments.
CALLER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def new_nonce() -> str:
    return secrets.token_hex(16)


def signing_message(
    method: str, path: str, caller: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    """The exact bytes that are signed; both sides build them with this one function.

    Seven lines joined by LF (no trailing LF): domain tag, upper-case method, path, caller,
    timestamp, nonce, lowercase hex SHA-256 of the body."""
    return b"\n".join(
        (
            DOMAIN,
            method.upper().encode("ascii"),
            path.encode("utf-8"),
            caller.encode("ascii"),
            timestamp.encode("ascii"),
            nonce.encode("ascii"),
            hashlib.sha256(body).hexdigest().encode("ascii"),
        )
    )


@dataclass(frozen=True)
class RequestSigner:
    """A caller's name and Ed25519 key; ``headers`` signs one request."""

    caller: str
    signing_key: SigningKey

    def __post_init__(self) -> None:
        if not CALLER_PATTERN.match(self.caller):
            raise ValueError(f"caller name {self.caller!r} is not valid")

    def headers(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        now: float | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """Headers for one request; a fresh random nonce unless one is given (test vectors)."""
        timestamp = str(int(time.time() if now is None else now))
        nonce = new_nonce() if nonce is None else nonce
        if not NONCE_PATTERN.match(nonce):
            raise ValueError("nonce must be 32 lowercase hex digits")
        message = signing_message(method, path, self.caller, timestamp, nonce, body)
        signature = self.signing_key.sign(message).signature
        return {
            HEADER_CALLER: self.caller,
            HEADER_TIMESTAMP: timestamp,
            HEADER_NONCE: nonce,
            HEADER_SIGNATURE: base64.b64encode(signature).decode("ascii"),
        }
