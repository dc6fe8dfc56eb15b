"""Signed picture snapshots: the coordinator signs the picture JSON as a DSSE envelope.

A viewer verifies offline with the coordinator's public key (``GET /v1/coordinator/key``, or
from the operator) and ``libra coordinator snapshot verify``: no call to the coordinator.
"""

from __future__ import annotations

import json
from pathlib import Path

from nacl.signing import VerifyKey

from protocol.dsse import Envelope, parse_envelope, sign, verify
from protocol.errors import UnknownKey
from protocol.keys import NodeKey, key_id

from .dp.release import DpPicture
from .picture import Picture

PICTURE_PAYLOAD_TYPE = "application/vnd.libra.picture+json; version=1"


class SigningKeyError(Exception):
    """The coordinator signing key file is unreadable or malformed."""


def load_or_create_key(path: Path) -> NodeKey:
    """Read the Ed25519 seed file, creating it (0600, exclusively) on first use."""
    import os

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = NodeKey.generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created concurrently: read that one
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(key.seed_b64() + "\n")
            return key
    try:
        return NodeKey.from_seed_b64(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SigningKeyError(f"cannot use coordinator signing key {path}: {exc}") from exc


def sign_picture(picture: Picture, key: NodeKey) -> Envelope:
    return sign(picture.model_dump_json().encode("utf-8"), PICTURE_PAYLOAD_TYPE, key)


def verify_snapshot(raw: bytes | str, public_key: VerifyKey) -> Picture:
    """Check the envelope against the given key; raise a ProtocolError subclass if it fails."""
    envelope = parse_envelope(raw)
    expected = key_id(public_key)

    def resolve(kid: str) -> VerifyKey:
        if kid != expected:
            raise UnknownKey(f"snapshot signed by key {kid}, not {expected}")
        return public_key

    _, payload = verify(envelope, PICTURE_PAYLOAD_TYPE, resolve)
    picture = json.loads(payload)
    # A labelled picture parses whole: parsing it as a plain Picture would drop the label.
    if isinstance(picture, dict) and picture.get("privacy") is not None:
        return DpPicture.model_validate(picture)
    return Picture.model_validate(picture)


def privacy_summary(picture: Picture) -> list[str]:
    """The privacy label of a DP picture as lines for a person, or [] for an exact or
    suppressed picture."""
    if not isinstance(picture, DpPicture):
        return []
    label = picture.privacy
    return [
        f"differential privacy: {label.mechanism} noise, epsilon {label.epsilon:g} "
        f"(delta {label.delta:g}), noise scale {label.scale:g}, sensitivity {label.sensitivity}",
        f"unit of privacy: {label.unit}",
        f"budget: {label.budget_per_window:g} epsilon per {label.window_seconds} s window of "
        f"report periods; this release charged {label.windows_charged} window(s)",
        f"noisy: {', '.join(label.noisy)}",
        f"derived from noisy counts: {', '.join(label.derived)}",
        f"not published (0 is not a count): {', '.join(label.withheld)}",
    ]
