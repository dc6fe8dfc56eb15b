"""PSI-cardinality between two nodes, relayed by the coordinator (issue 15): the wire messages
and the protocol steps.

Two nodes learn how many exact hashes of one family their lists share, and nothing else about
each other's list but its size. The cryptography is OpenMined's openmined-psi (ECDH over P-256
with a Golomb-compressed-set setup message) in its cardinality mode (``reveal_intersection``
False). The protocol runs once in each direction, so each node computes the cardinality itself
as a PSI client and needs to trust neither the peer's word nor the coordinator:

* each node posts its ``request`` (its own set, encrypted under its client key);
* on the peer's request, each node posts ``setup`` (its own set, encrypted under its server key,
  in a GCS sized for the peer's set) and ``response`` (the peer's encrypted elements,
  re-encrypted under its server key and sorted, so the peer cannot tell which ones matched);
* from the peer's setup and response, each node computes the intersection size.

Everything a node sends is a DSSE envelope (protocol/dsse.py) signed with its registered node
key over RFC 8785 canonical JSON, the same as reports: an offer (the initiator's consent), a
consent or decline (the responder's), and step messages whose ``body`` is the standard base64
of openmined-psi's serialized protobuf. The coordinator stores and forwards these opaque bytes.

What each node learns: the intersection size and the peer's set size (the number of encrypted
elements in its request). The GCS may report a false positive: with ``FPR`` the chance that the
cardinality over-counts at all is at most 1e-9 per run; it never under-counts.

This module imports openmined-psi lazily: parsing and verifying messages does not need it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from nacl.signing import VerifyKey
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, model_validator

from .canonical import canonical_json
from .dsse import CanonicalBase64, Envelope, parse_envelope, sign, verify
from .keys import NodeKey
from .models import WireTimestamp, check_canonical, parse_signed_payload, validate_payload

PSI_OFFER_PAYLOAD_TYPE = "application/vnd.libra.psi-offer+json; version=1"
PSI_CONSENT_PAYLOAD_TYPE = "application/vnd.libra.psi-consent+json; version=1"
PSI_MESSAGE_PAYLOAD_TYPE = "application/vnd.libra.psi-message+json; version=1"

# The exact families a PSI session may compare: image file hashes and video file hashes
# (a list entry's family plus its media, node/lists/base.py).
PsiFamily = Literal["md5", "sha1", "sha256", "video-md5", "video-sha1", "video-sha256"]
PSI_FAMILIES: tuple[PsiFamily, ...] = (
    "md5",
    "sha1",
    "sha256",
    "video-md5",
    "video-sha1",
    "video-sha256",
)
PsiStep = Literal["request", "setup", "response"]
PSI_STEPS: tuple[PsiStep, ...] = ("request", "setup", "response")
Decision = Literal["accept", "decline"]

# The chance that one run's cardinality over-counts (the GCS's false-positive rate for the
# whole query): openmined-psi sizes the setup message's hash range from it.
FPR = 1e-9
# Elements per side. A request or response holds 35 bytes per element (a compressed P-256
# point with protobuf framing); larger lists would need chunked sessions (not built).
MAX_SET_SIZE = 1_000_000
MAX_MESSAGE_BYTES = 36 * MAX_SET_SIZE + 65_536  # raw protobuf bytes of one step
MAX_BODY_CHARS = 4 * ((MAX_MESSAGE_BYTES + 2) // 3)  # its base64
# A session that is not finished by then is dropped with its messages.
DEFAULT_TTL = timedelta(days=1)
MAX_TTL = timedelta(days=7)

NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
SESSION_ID_PATTERN = r"^[0-9a-f]{32}$"

# The P-256 group order: an openmined-psi key is a scalar in [1, order).
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
_KEY_DOMAIN = b"libra-psi/v1 key"


def _valid_family(value: str) -> str:
    if value not in PSI_FAMILIES:
        raise ValueError(f"family must be one of {', '.join(PSI_FAMILIES)}")
    return value


NodeId = Annotated[StrictStr, Field(pattern=NODE_ID_PATTERN)]
SessionId = Annotated[StrictStr, Field(pattern=SESSION_ID_PATTERN)]


class _Signed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_payload(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


class PsiOffer(_Signed):
    """The initiator asks the responder to compare one family; signing it is its consent."""

    session_id: SessionId
    initiator: NodeId
    responder: NodeId
    family: Annotated[StrictStr, AfterValidator(_valid_family)]
    created_at: WireTimestamp
    # None: created_at + DEFAULT_TTL.
    expires_at: WireTimestamp | None = None

    @model_validator(mode="after")
    def _check(self) -> PsiOffer:
        if self.initiator == self.responder:
            raise ValueError("a node cannot run PSI with itself")
        if not self.created_at < self.expiry <= self.created_at + MAX_TTL:
            raise ValueError(f"expires_at must be after created_at, by at most {MAX_TTL.days} days")
        return self

    @property
    def expiry(self) -> datetime:
        return self.expires_at or self.created_at + DEFAULT_TTL


class PsiConsent(_Signed):
    """The responder's answer to an offer: only ``accept`` lets any step message be sent."""

    session_id: SessionId
    node_id: NodeId
    decision: Decision
    created_at: WireTimestamp


class PsiMessage(_Signed):
    """One protocol step of one side: openmined-psi's serialized protobuf, base64."""

    session_id: SessionId
    sender: NodeId
    step: PsiStep
    created_at: WireTimestamp
    body: CanonicalBase64 = Field(min_length=4, max_length=MAX_BODY_CHARS)

    def body_bytes(self) -> bytes:
        return base64.b64decode(self.body, validate=True)


_M = TypeVar("_M", bound=_Signed)

PAYLOAD_TYPES: dict[type[_Signed], str] = {
    PsiOffer: PSI_OFFER_PAYLOAD_TYPE,
    PsiConsent: PSI_CONSENT_PAYLOAD_TYPE,
    PsiMessage: PSI_MESSAGE_PAYLOAD_TYPE,
}


def sign_message(message: _Signed, key: NodeKey) -> Envelope:
    """The DSSE envelope of an offer, consent or step message, signed by the sending node."""
    return sign(message.to_payload(), PAYLOAD_TYPES[type(message)], key)


def open_message(
    raw: bytes | str | dict[str, Any],
    model: type[_M],
    resolve_key: Callable[[str], VerifyKey],
) -> tuple[_M, str, Envelope]:
    """Parse and verify a signed PSI envelope: (the message, the signing key id, the envelope).

    Raises the ProtocolError of the first defect: malformed envelope, wrong payload type,
    unknown/revoked key (from ``resolve_key``), bad signature, non-canonical or invalid payload.
    """
    envelope = parse_envelope(raw)
    keyid, payload = verify(envelope, PAYLOAD_TYPES[model], resolve_key)
    data = parse_signed_payload(payload)
    check_canonical(payload, data)
    return validate_payload(model, data, model.__name__), keyid, envelope


def signer_of(message: _Signed) -> str:
    """The node that must have signed the message."""
    if isinstance(message, PsiOffer):
        return message.initiator
    if isinstance(message, PsiConsent):
        return message.node_id
    assert isinstance(message, PsiMessage)
    return message.sender


# --------------------------------------------------------------------------- the steps


def derive_key(secret: bytes, session_id: str, role: Literal["client", "server"]) -> bytes:
    """A node's openmined-psi key for one session and role, derived from a node secret.

    Deterministic, so an interrupted run resumes with the same keys and no key is ever
    stored; distinct per session and role, so no two runs share a key."""
    digest = hmac.new(
        secret, _KEY_DOMAIN + b"\n" + session_id.encode() + b"\n" + role.encode(), hashlib.sha512
    ).digest()
    scalar = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1  # uniform enough: 512 bits
    return scalar.to_bytes(32, "big")


class StepError(ValueError):
    """A step message does not decode as its protobuf, or is out of bounds."""


def _psi() -> Any:
    import private_set_intersection.python as psi  # type: ignore[import-untyped]

    return psi


def _check_items(items: Sequence[str], what: str) -> None:
    if len(items) > MAX_SET_SIZE:
        raise StepError(f"{what} holds {len(items)} elements; the limit is {MAX_SET_SIZE}")


def client_request(client_key: bytes, items: Sequence[str]) -> bytes:
    """Step ``request``: this node's set encrypted under its client key (serialized)."""
    _check_items(items, "the set")
    client = _psi().client.CreateFromKey(client_key, False)
    data: bytes = client.CreateRequest(list(items)).SerializeToString()
    return data


def _parse(kind: str, data: bytes) -> Any:
    psi = _psi()
    proto = {"request": psi.Request, "setup": psi.ServerSetup, "response": psi.Response}[kind]()
    if len(data) > MAX_MESSAGE_BYTES:
        raise StepError(f"{kind} is {len(data)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise StepError(f"{kind} is not an openmined-psi {type(proto).__name__}") from exc
    return proto


def request_size(request: bytes) -> int:
    """The peer's set size: the number of encrypted elements in its request."""
    parsed = _parse("request", request)
    if parsed.reveal_intersection:
        raise StepError("the request asks for the intersection itself; only its size is allowed")
    count = len(parsed.encrypted_elements)
    if count > MAX_SET_SIZE:
        raise StepError(f"the request holds {count} elements; the limit is {MAX_SET_SIZE}")
    return count


def server_answer(
    server_key: bytes, items: Sequence[str], peer_request: bytes
) -> tuple[bytes, bytes]:
    """Steps ``setup`` and ``response`` for the peer's request: (setup, response) serialized."""
    _check_items(items, "the set")
    peer_size = request_size(peer_request)
    psi = _psi()
    server = psi.server.CreateFromKey(server_key, False)
    setup = server.CreateSetupMessage(FPR, max(peer_size, 1), list(items), psi.DataStructure.GCS)
    response = server.ProcessRequest(_parse("request", peer_request))
    return setup.SerializeToString(), response.SerializeToString()


def cardinality(client_key: bytes, setup: bytes, response: bytes) -> int:
    """The intersection size, from the peer's setup and response to this node's request."""
    client = _psi().client.CreateFromKey(client_key, False)
    try:
        size = int(client.GetIntersectionSize(_parse("setup", setup), _parse("response", response)))
    except RuntimeError as exc:  # the library's own checks (e.g. a point not on the curve)
        raise StepError(f"the peer's setup/response does not decode: {exc}") from exc
    return size
