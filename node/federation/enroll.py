"""Joining a federation: enroll with an invitation, and relay the federation key.

- The node makes an X25519 key pair (``<data_dir>/x25519.key``, 0600) next to its Ed25519
  signing key and enrolls with both public keys; the coordinator answers with a node token
  (``<data_dir>/coordinator.token``, 0600) used for the relay below.
- A sponsoring (already federated) node seals the federation key to each new member's X25519
  public key with a libsodium SealedBox and posts the blob; the coordinator only stores it.
- The new node fetches the blobs and opens them with its private key. Several sponsors must
  agree: a single lying sponsor cannot hand out a different key unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from pydantic import BaseModel, ValidationError

from node import telemetry
from node.keys.files import FEDERATION_KEY_BYTES, KeyFileError
from protocol.models import ErrorResponse

X25519_FILE_NAME = "x25519.key"
TOKEN_FILE_NAME = "coordinator.token"  # noqa: S105 (a file name, not a secret)


class EnrollError(Exception):
    """The coordinator refused a request, or its answer or a sealed key is unusable."""


def _write_secret(path: Path, text: str, *, replace: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite it") from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text + "\n")


def create_x25519_key(path: Path) -> PrivateKey:
    key = PrivateKey.generate()
    _write_secret(path, base64.b64encode(bytes(key)).decode("ascii"))
    return key


def load_x25519_key(path: Path) -> PrivateKey:
    try:
        raw = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except FileNotFoundError as exc:
        raise KeyFileError(f"X25519 key file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError) as exc:
        raise KeyFileError(f"cannot read X25519 key file {path}: {exc}") from exc
    if len(raw) != 32:
        raise KeyFileError(f"{path}: an X25519 private key is 32 bytes")
    return PrivateKey(raw)


def public_b64(key: PrivateKey) -> str:
    return base64.b64encode(bytes(key.public_key)).decode("ascii")


def seal_federation_key(federation_key: bytes, recipient_x25519_b64: str) -> str:
    """SealedBox(federation key) for the recipient, base64. Only its private key opens it."""
    try:
        recipient = PublicKey(base64.b64decode(recipient_x25519_b64, validate=True))
    except (binascii.Error, ValueError, CryptoError) as exc:
        raise EnrollError(f"recipient X25519 key is unusable: {exc}") from exc
    return base64.b64encode(SealedBox(recipient).encrypt(federation_key)).decode("ascii")


def open_federation_key(sealed_b64: str, key: PrivateKey) -> bytes:
    try:
        plain = SealedBox(key).decrypt(base64.b64decode(sealed_b64, validate=True))
    except (binascii.Error, ValueError, CryptoError) as exc:
        raise EnrollError("a sealed federation key does not open with this node's key") from exc
    if len(plain) != FEDERATION_KEY_BYTES:
        raise EnrollError(f"a sealed federation key is not {FEDERATION_KEY_BYTES} bytes")
    return plain


# --- coordinator calls ------------------------------------------------------------------------


class Enrolled(BaseModel):
    node_id: str
    key_id: str
    status: str
    node_token: str
    token_expires_at: str


class _Recipient(BaseModel):
    node_id: str
    country: str
    status: str
    x25519_public_key: str


class _Recipients(BaseModel):
    recipients: list[_Recipient]


class _Sealed(BaseModel):
    sponsor: str
    sealed_key: str
    created_at: str


class _SealedList(BaseModel):
    sealed_keys: list[_Sealed]


def check_answer(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    try:
        body = ErrorResponse.model_validate(response.json())
        detail = f"{body.error.code}: {body.error.message}"
    except (ValueError, ValidationError):
        detail = response.text[:200]
    raise EnrollError(f"coordinator answered {response.status_code} ({detail})")


def coordinator_client(
    coordinator_url: str, token: str | None, transport: httpx.BaseTransport | None
) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(
        base_url=coordinator_url.rstrip("/"),
        headers=headers,
        timeout=30.0,
        transport=transport,
        trust_env=False,
    )
    telemetry.instrument_client(client)  # issue 8: traceparent to the coordinator only
    return client


def enroll(
    coordinator_url: str,
    *,
    invitation: str,
    node_id: str,
    country: str,
    operator: str,
    ed25519_public_key: str,
    x25519_key: PrivateKey,
    transport: httpx.BaseTransport | None = None,
) -> Enrolled:
    with coordinator_client(coordinator_url, None, transport) as client:
        try:
            response = client.post(
                "/v1/enroll",
                json={
                    "invitation": invitation,
                    "node_id": node_id,
                    "country": country,
                    "operator": operator,
                    "ed25519_public_key": ed25519_public_key,
                    "x25519_public_key": public_b64(x25519_key),
                },
            )
        except httpx.HTTPError as exc:
            raise EnrollError(f"cannot reach the coordinator: {exc}") from exc
    check_answer(response)
    try:
        return Enrolled.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        raise EnrollError("the coordinator's enrollment answer is malformed") from exc


def save_token(path: Path, token: str) -> None:
    _write_secret(path, token, replace=True)


def load_token(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError as exc:
        raise KeyFileError(f"no coordinator token at {path}; enroll first") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from exc


@dataclass(frozen=True)
class SponsorResult:
    sealed_for: list[str]


def sponsor(
    coordinator_url: str,
    token: str,
    federation_key: bytes,
    *,
    transport: httpx.BaseTransport | None = None,
) -> SponsorResult:
    """Seal our federation key to every member still waiting for one from us."""
    done: list[str] = []
    with coordinator_client(coordinator_url, token, transport) as client:
        try:
            listing = client.get("/v1/federation-key/recipients")
            check_answer(listing)
            recipients = _Recipients.model_validate(listing.json()).recipients
            for recipient in recipients:
                sealed = seal_federation_key(federation_key, recipient.x25519_public_key)
                response = client.post(
                    "/v1/federation-key/sealed",
                    json={
                        "recipient": recipient.node_id,
                        "recipient_x25519": recipient.x25519_public_key,
                        "sealed_key": sealed,
                    },
                )
                check_answer(response)
                done.append(recipient.node_id)
        except httpx.HTTPError as exc:
            raise EnrollError(f"cannot reach the coordinator: {exc}") from exc
        except ValidationError as exc:
            raise EnrollError("the coordinator's recipient list is malformed") from exc
    return SponsorResult(sealed_for=done)


@dataclass(frozen=True)
class FetchedKey:
    key: bytes
    sponsors: list[str]


def fetch_federation_key(
    coordinator_url: str,
    token: str,
    x25519_key: PrivateKey,
    *,
    min_sponsors: int = 1,
    transport: httpx.BaseTransport | None = None,
) -> FetchedKey:
    """Open every sealed copy; they must all hold the same key, from >= min_sponsors nodes."""
    with coordinator_client(coordinator_url, token, transport) as client:
        try:
            response = client.get("/v1/federation-key/sealed")
        except httpx.HTTPError as exc:
            raise EnrollError(f"cannot reach the coordinator: {exc}") from exc
    check_answer(response)
    try:
        sealed = _SealedList.model_validate(response.json()).sealed_keys
    except (ValueError, ValidationError) as exc:
        raise EnrollError("the coordinator's sealed-key list is malformed") from exc
    if len(sealed) < min_sponsors:
        raise EnrollError(
            f"{len(sealed)} sponsor(s) sealed the federation key so far; {min_sponsors} required"
        )
    keys = {item.sponsor: open_federation_key(item.sealed_key, x25519_key) for item in sealed}
    if len(set(keys.values())) != 1:
        raise EnrollError(
            "sponsors sealed DIFFERENT federation keys: "
            + ", ".join(sorted(keys))
            + "; do not use any of them, tell the federation's admins"
        )
    return FetchedKey(key=next(iter(keys.values())), sponsors=sorted(keys))


def save_federation_key(path: Path, key: bytes, *, replace: bool = False) -> bool:
    """Write the key; True if the file changed. An existing different key is only replaced
    with ``replace`` (a node that already reported with it would split the sketches)."""
    if path.exists():
        from node.keys.files import load_federation_key

        if load_federation_key(path) == key:
            return False
        if not replace:
            raise KeyFileError(
                f"{path} holds a different federation key; use --replace if this node has "
                "not reported with it yet"
            )
    _write_secret(path, base64.b64encode(key).decode("ascii"), replace=True)
    return True
