"""protocol/tlog_note.py: C2SP checkpoint text, signed-note signatures and cosignature/v1."""

from __future__ import annotations

import base64
import hashlib

import pytest
from nacl.signing import SigningKey

from protocol.errors import BadSignature
from protocol.tlog_note import (
    Checkpoint,
    MalformedNote,
    Note,
    cosign,
    find_cosignature,
    key_id,
    parse_checkpoint,
    parse_note,
    sign_note,
    verifier_key,
    verify_cosignature,
    verify_note,
)

LOG = SigningKey(b"\x01" * 32)
WITNESS = SigningKey(b"\x02" * 32)
ROOT = hashlib.sha256(b"root").digest()


def _signed(size: int = 5) -> Note:
    body = Checkpoint("libra.test/log", size, ROOT).body()
    return Note(body, (sign_note(body, "libra.test/log", LOG),))


def test_checkpoint_text_round_trips() -> None:
    cp = Checkpoint("libra.test/log", 20852163, ROOT, ("ext one",))
    body = cp.body()
    assert body == f"libra.test/log\n20852163\n{base64.b64encode(ROOT).decode()}\next one\n"
    assert parse_checkpoint(body) == cp


@pytest.mark.parametrize(
    "body",
    [
        "libra.test/log\n5\n",  # no root line
        "libra.test/log\n05\n" + base64.b64encode(ROOT).decode() + "\n",  # leading zero
        "libra.test/log\n-5\n" + base64.b64encode(ROOT).decode() + "\n",
        "libra.test/log\n5\n" + base64.b64encode(ROOT[:31]).decode() + "\n",  # short root
        "libra.test/log\n5\n" + base64.b64encode(ROOT).decode(),  # no final newline
        "\n5\n" + base64.b64encode(ROOT).decode() + "\n",  # empty origin
        "libra.test/log\n5\n" + base64.b64encode(ROOT).decode() + "\n\n",  # empty extension
        "libra.test/log\n5\n%%%\n",
        "libra.test/log\t\n5\n" + base64.b64encode(ROOT).decode() + "\n",  # control char
    ],
)
def test_malformed_checkpoints_are_rejected(body: str) -> None:
    with pytest.raises(MalformedNote):
        parse_checkpoint(body)


def test_ed25519_key_id_follows_signed_note() -> None:
    pub = bytes(LOG.verify_key)
    want = hashlib.sha256(b"libra.test/log\n\x01" + pub).digest()[:4]
    assert key_id("libra.test/log", 0x01, pub) == want
    vkey = verifier_key("libra.test/log", LOG.verify_key)
    encoded = base64.b64encode(b"\x01" + pub).decode()
    assert vkey == f"libra.test/log+{want.hex()}+{encoded}"


def test_signed_note_round_trips_and_verifies() -> None:
    note = _signed()
    raw = note.render()
    assert "\n\n\u2014 libra.test/log " in raw
    parsed = parse_note(raw)
    assert parsed == note
    verify_note(parsed, "libra.test/log", LOG.verify_key)


def test_note_from_another_key_or_with_changed_text_fails() -> None:
    note = _signed()
    with pytest.raises(BadSignature, match="no signature"):
        verify_note(note, "libra.test/log", WITNESS.verify_key)
    tampered = Note(note.text.replace("\n5\n", "\n6\n"), note.signatures)
    with pytest.raises(BadSignature, match="does not verify"):
        verify_note(tampered, "libra.test/log", LOG.verify_key)


def test_unknown_signatures_are_ignored() -> None:
    other = sign_note(_signed().text, "someone.else/key", WITNESS)
    note = _signed().with_signature(other)
    verify_note(parse_note(note.render()), "libra.test/log", LOG.verify_key)


@pytest.mark.parametrize(
    "raw",
    [
        "no blank line\n\u2014 a AAAAAAA=\n",
        "text\n\n",  # no signature
        "text\n\n- a AAAAAAAA\n",  # hyphen, not em dash
        "text\n\n\u2014 a+b AAAAAAAA\n",  # plus in name
        "text\n\n\u2014 a AAAA\n",  # shorter than a key id
        "text\n\n\u2014 a not*base64\n",
        "text\r\n\n\u2014 a AAAAAAAA\n",
    ],
)
def test_malformed_notes_are_rejected(raw: str) -> None:
    with pytest.raises(MalformedNote):
        parse_note(raw)


def test_cosignature_v1_format() -> None:
    note = _signed()
    sig = cosign(note.text, "libra.test/witness", WITNESS, 1_700_000_000)
    pub = bytes(WITNESS.verify_key)
    assert sig.key_id == hashlib.sha256(b"libra.test/witness\n\x04" + pub).digest()[:4]
    assert sig.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1700000000\n" + note.text.encode()
    WITNESS.verify_key.verify(message, sig.signature[8:])  # raises if wrong
    cosigned = parse_note(note.with_signature(sig).render())
    assert find_cosignature(cosigned, "libra.test/witness", WITNESS.verify_key) == 1_700_000_000
    assert find_cosignature(cosigned, "libra.test/other", WITNESS.verify_key) is None
    verify_note(cosigned, "libra.test/log", LOG.verify_key)  # log signature still verifies


def test_cosignature_on_another_checkpoint_fails() -> None:
    sig = cosign(_signed(5).text, "libra.test/witness", WITNESS, 1)
    with pytest.raises(BadSignature, match="does not verify"):
        verify_cosignature(sig, _signed(6).text, WITNESS.verify_key)
    with pytest.raises(BadSignature, match="key id"):
        verify_cosignature(sig, _signed(5).text, LOG.verify_key)
    with pytest.raises(MalformedNote):
        cosign(_signed().text, "libra.test/witness", WITNESS, -1)
