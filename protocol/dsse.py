"""DSSE envelopes (Dead Simple Signing Envelope v1) with Ed25519 signatures.

The signature covers PAE("DSSEv1", payloadType, payload). Verifiers check the exact payload
bytes carried in the envelope and only then parse them: nothing is re-canonicalised.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .errors import BadSignature, MalformedEnvelope, UnknownPayloadType
from .keys import NodeKey
from .strictjson import StrictJsonError, loads


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: the exact bytes an Ed25519 signature covers."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def _canonical_base64(text: str) -> str:
    """Standard alphabet, padded, no whitespace, and the one spelling of its bytes: so a
    signature or payload has exactly one text, and two verifiers never decode it differently."""
    if not text.isascii():
        raise ValueError("must be standard base64 (ASCII)")
    try:
        decoded = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"must be standard padded base64 ({exc})") from None
    if base64.b64encode(decoded).decode("ascii") != text:
        raise ValueError("must be canonical base64 (unused bits zero)")
    return text


CanonicalBase64 = Annotated[str, AfterValidator(_canonical_base64)]


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    # A key id is the SHA-256 of the raw public key (protocol.keys.key_id).
    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    sig: CanonicalBase64 = Field(min_length=1, max_length=256)


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)
    payload_type: str = Field(alias="payloadType", min_length=1, max_length=256)
    payload: CanonicalBase64
    # Exactly one: a report has one signer, its node (checked while parsing, so a second
    # signature is malformed_envelope before anything else is looked at).
    signatures: list[Signature] = Field(min_length=1, max_length=1)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    def payload_bytes(self) -> bytes:
        try:
            return base64.b64decode(self.payload, validate=True)
        except (binascii.Error, ValueError) as exc:  # non-ASCII text raises ValueError
            raise MalformedEnvelope("payload is not standard base64") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sign(payload: bytes, payload_type: str, key: NodeKey) -> Envelope:
    signature = key.signing_key.sign(pae(payload_type, payload)).signature
    return Envelope(
        payload_type=payload_type,
        payload=_b64(payload),
        signatures=[Signature(keyid=key.key_id, sig=_b64(signature))],
    )


def parse_envelope(raw: bytes | str | dict[str, Any]) -> Envelope:
    """Parse an envelope from the wire (strict JSON, protocol.strictjson), mapping every
    defect to MalformedEnvelope."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    try:
        data = loads(raw) if isinstance(raw, bytes) else raw
    except StrictJsonError as exc:
        raise MalformedEnvelope(f"envelope: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedEnvelope("envelope must be a JSON object")
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedEnvelope(f"envelope field {where}: {first['msg']}") from exc


def verify(
    envelope: Envelope,
    expected_type: str,
    resolve_key: Callable[[str], VerifyKey],
) -> tuple[str, bytes]:
    """Verify the envelope and return (keyid, payload bytes).

    ``resolve_key`` maps a key id to its public key and raises UnknownKey / RevokedKey itself,
    so the caller decides what "valid" means (registry, time of signing, revocation).
    Exactly one signature is expected: a report has one signer, its node.
    """
    if envelope.payload_type != expected_type:
        raise UnknownPayloadType(f"payloadType {envelope.payload_type!r} is not {expected_type!r}")
    if len(envelope.signatures) != 1:
        raise MalformedEnvelope("exactly one signature is expected")
    signature = envelope.signatures[0]
    payload = envelope.payload_bytes()
    verify_key = resolve_key(signature.keyid)
    try:
        sig = base64.b64decode(signature.sig, validate=True)
    except (binascii.Error, ValueError) as exc:  # non-ASCII text raises ValueError
        raise MalformedEnvelope("signature is not standard base64") from exc
    if len(sig) != 64:
        raise BadSignature("an Ed25519 signature is 64 bytes")
    try:
        verify_key.verify(pae(envelope.payload_type, payload), sig)
    except BadSignatureError as exc:
        raise BadSignature("signature does not verify over the payload") from exc
    return signature.keyid, payload
