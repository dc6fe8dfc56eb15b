"""Ed25519 signing keys: generation, stable key ids and a small text encoding for files."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey


def key_id(verify_key: VerifyKey) -> str:
    """The key id is the lowercase hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(bytes(verify_key)).hexdigest()


def encode_public_key(verify_key: VerifyKey) -> str:
    return base64.b64encode(bytes(verify_key)).decode("ascii")


def decode_public_key(text: str) -> VerifyKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return VerifyKey(raw)
    except (ValueError, CryptoError) as exc:
        raise ValueError("public key must be 32 bytes of standard base64") from exc


@dataclass(frozen=True)
class NodeKey:
    """A node's signing key with its derived id."""

    signing_key: SigningKey

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed_b64(cls, text: str) -> NodeKey:
        try:
            seed = base64.b64decode(text.strip(), validate=True)
            return cls(SigningKey(seed))
        except (ValueError, CryptoError) as exc:
            raise ValueError("private key file must hold a 32-byte base64 seed") from exc

    def seed_b64(self) -> str:
        return base64.b64encode(bytes(self.signing_key)).decode("ascii")

    @property
    def verify_key(self) -> VerifyKey:
        return self.signing_key.verify_key

    @property
    def key_id(self) -> str:
        return key_id(self.verify_key)

    @property
    def public_key_b64(self) -> str:
        return encode_public_key(self.verify_key)
