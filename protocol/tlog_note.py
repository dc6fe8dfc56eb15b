"""Checkpoints as C2SP signed notes, with Ed25519 log signatures and witness cosignatures.

Formats (all text UTF-8, no control character but newline):

* ``tlog-checkpoint`` body: origin line, tree size in decimal (no leading zero), base64 root
  hash, then optional non-empty extension lines; every line ends in ``\\n``.
* ``signed-note``: body, one blank line, then signature lines ``— <name> <base64(key id ||
  sig)>\\n``. Ed25519 (type 0x01): key id = SHA-256(name || 0x0A || 0x01 || pubkey)[:4], the
  signature covers the body.
* ``tlog-cosignature`` cosignature/v1 (type 0x04): key id = SHA-256(name || 0x0A || 0x04 ||
  pubkey)[:4]; the signature is u64 big-endian timestamp || Ed25519 signature over
  ``"cosignature/v1\\ntime <timestamp>\\n" || body``.

Verification follows the spec: a signature whose (name, key id) is unknown is ignored; one from a
known key must verify; a note with no verified signature from a known key is rejected.
Pure: imports nothing of node or coordinator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .errors import BadSignature, ProtocolError
from .tlog import HASH_SIZE

SIG_TYPE_ED25519 = 0x01
SIG_TYPE_COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 64  # the spec asks verifiers to accept at least 16
MAX_NOTE_BYTES = 64 * 1024
MAX_TIMESTAMP = 2**63 - 1
_SIG_PREFIX = "\u2014 "  # em dash, space
_SIZE_RE = re.compile(r"(0|[1-9][0-9]{0,18})")


class MalformedNote(ProtocolError):
    """A note, checkpoint or signature line does not follow the C2SP text format."""

    code = "malformed_note"


def _check_name(name: str) -> None:
    if not name or any(ch.isspace() or ch == "+" for ch in name):
        raise MalformedNote(f"key name {name!r} must be non-empty, without spaces or '+'")


def _check_text(text: str) -> None:
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise MalformedNote("note contains a control character other than newline")


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4] (signed-note recommended key id)."""
    _check_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def verifier_key(name: str, verify_key: VerifyKey) -> str:
    """The ``<name>+<hex key id>+<base64(0x01 || pubkey)>`` vkey text used by Go's note tools."""
    pub = bytes(verify_key)
    kid = key_id(name, SIG_TYPE_ED25519, pub).hex()
    return f"{name}+{kid}+{base64.b64encode(bytes([SIG_TYPE_ED25519]) + pub).decode()}"


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: the log's identity, its size and its root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        _check_name_line(self.origin, "origin")
        if not 0 <= self.size < 2**63 or len(self.root) != HASH_SIZE:
            raise MalformedNote("checkpoint size or root hash out of range")
        for ext in self.extensions:
            _check_name_line(ext, "extension")
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))


def _check_name_line(line: str, what: str) -> None:
    if not line or "\n" in line:
        raise MalformedNote(f"checkpoint {what} line must be one non-empty line")
    _check_text(line)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedNote(f"{what} is not standard base64") from exc


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (the note text, without signatures); strict."""
    _check_text(body)
    if not body.endswith("\n"):
        raise MalformedNote("checkpoint must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNote("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise MalformedNote("checkpoint origin line is empty")
    if not _SIZE_RE.fullmatch(size_text) or int(size_text) >= 2**63:
        raise MalformedNote(f"checkpoint size {size_text!r} is not a decimal without leading zero")
    root = _b64(root_text, "checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise MalformedNote(f"checkpoint root hash must be {HASH_SIZE} bytes")
    if any(not ext for ext in extensions):
        raise MalformedNote("checkpoint extension lines must not be empty")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: who signed (name, 4-byte key id) and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_SIG_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class Note:
    """A signed note: its text (ending in newline) and its signature lines in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(sig.line() for sig in self.signatures)

    def with_signature(self, sig: NoteSignature) -> Note:
        """Add a signature line, replacing one with the same (name, key id)."""
        kept = tuple(s for s in self.signatures if (s.name, s.key_id) != (sig.name, sig.key_id))
        return Note(self.text, (*kept, sig))


def parse_note(raw: str) -> Note:
    """Split a signed note at its last blank line and parse every signature line."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise MalformedNote(f"note is larger than {MAX_NOTE_BYTES} bytes")
    _check_text(raw)
    cut = raw.rfind("\n\n")
    if cut < 0 or not raw.endswith("\n"):
        raise MalformedNote("note needs text, a blank line and signature lines")
    text, sig_block = raw[: cut + 1], raw[cut + 2 :]
    lines = sig_block[:-1].split("\n") if sig_block else []
    if not lines:
        raise MalformedNote("note has no signature line")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note has more than {MAX_SIGNATURES} signatures")
    sigs = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNote("signature line must start with an em dash and a space")
        name, sep, blob_text = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep:
            raise MalformedNote("signature line needs a key name and a signature")
        _check_name(name)
        blob = _b64(blob_text, "signature")
        if len(blob) < 5:
            raise MalformedNote("signature is shorter than a key id")
        sigs.append(NoteSignature(name, blob[:4], blob[4:]))
    return Note(text, tuple(sigs))


def sign_note(text: str, name: str, signing_key: SigningKey) -> NoteSignature:
    """An Ed25519 (type 0x01) signature of the note text."""
    _check_text(text)
    pub = bytes(signing_key.verify_key)
    sig = signing_key.sign(text.encode("utf-8")).signature
    return NoteSignature(name, key_id(name, SIG_TYPE_ED25519, pub), sig)


def _matching(note: Note, name: str, kid: bytes) -> list[NoteSignature]:
    return [s for s in note.signatures if s.name == name and s.key_id == kid]


def verify_note(note: Note, name: str, verify_key: VerifyKey) -> None:
    """Raise BadSignature unless the known Ed25519 key signed the note (others are ignored)."""
    kid = key_id(name, SIG_TYPE_ED25519, bytes(verify_key))
    found = _matching(note, name, kid)
    if not found:
        raise BadSignature(f"note has no signature from {name}")
    for sig in found:
        try:
            verify_key.verify(note.text.encode("utf-8"), sig.signature)
        except (BadSignatureError, ValueError) as exc:
            raise BadSignature(f"signature from {name} does not verify") from exc


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header line, time line, whole checkpoint body."""
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, name: str, signing_key: SigningKey, timestamp: int) -> NoteSignature:
    """A witness's timestamped cosignature/v1 (type 0x04) of a checkpoint body."""
    _check_text(body)
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedNote("cosignature timestamp out of range")
    pub = bytes(signing_key.verify_key)
    sig = signing_key.sign(cosigned_message(body, timestamp)).signature
    return NoteSignature(
        name, key_id(name, SIG_TYPE_COSIGNATURE_V1, pub), timestamp.to_bytes(8, "big") + sig
    )


def verify_cosignature(sig: NoteSignature, body: str, verify_key: VerifyKey) -> int:
    """Check one cosignature line against the cosigner's key; return its timestamp."""
    if sig.key_id != key_id(sig.name, SIG_TYPE_COSIGNATURE_V1, bytes(verify_key)):
        raise BadSignature(f"cosignature key id does not match the key of {sig.name}")
    if len(sig.signature) != 8 + 64:
        raise BadSignature("cosignature must be an 8-byte timestamp and a 64-byte signature")
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise BadSignature("cosignature timestamp exceeds 2^63 - 1")
    try:
        verify_key.verify(cosigned_message(body, timestamp), sig.signature[8:])
    except (BadSignatureError, ValueError) as exc:
        raise BadSignature(f"cosignature from {sig.name} does not verify") from exc
    return timestamp


def find_cosignature(note: Note, name: str, verify_key: VerifyKey) -> int | None:
    """The verified timestamp of ``name``'s cosignature on the note, None if it has none."""
    kid = key_id(name, SIG_TYPE_COSIGNATURE_V1, bytes(verify_key))
    found = _matching(note, name, kid)
    if not found:
        return None
    return max(verify_cosignature(sig, note.text, verify_key) for sig in found)
