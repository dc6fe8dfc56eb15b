"""Request-body templates of the test vectors, and how to re-bind a vector to live keys.

A vector's ``body_template`` is the request body with placeholders ``${name}`` or
``${name:role}`` where the signature-dependent text goes; ``expand`` fills them in for a set of
keys. With the fixed vector keys the result is the vector's ``body_b64`` byte for byte; the
conformance checker expands the same template with keys it registered at a live coordinator,
after ``rebind`` moved the payload to its node, keys, report ids and the current time.

Placeholders (docs/conformance.md lists them too):

- ``payload``: standard padded base64 of the payload bytes (the valid form);
  ``payload_nopad`` without ``=`` padding; ``payload_ws`` with a ``\\n`` escape every 76
  characters; ``payload_urlsafe`` in the URL-safe alphabet; ``payload_noncanon`` with the unused
  low bits of the last base64 digit set (decodes to the same bytes, but is not canonical).
- ``sig:ROLE``: standard base64 of the Ed25519 signature by key ROLE over
  PAE(payload_type, payload); ``sig_nopad``, ``sig_noncanon`` as above; ``sig_flipped`` the
  signature with one bit flipped; ``sig_short`` its first 63 bytes.
- ``keyid:ROLE``: the key id (64 lowercase hex digits); ``KEYID:ROLE`` in upper case.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .dsse import pae
from .keys import NodeKey

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_]+)(?::([a-z]+))?\}")
_TIMESTAMP = re.compile(rb"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})")
# A quoted 32-hex string in a payload is a report id (key ids have 64 digits, base64 has no
# quotes inside): re-bound to a fresh id per run, the same one wherever it recurs.
_REPORT_ID = re.compile(rb'"([0-9a-f]{32})"')
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class TemplateError(ValueError):
    """A template names a placeholder or key role that does not exist."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def noncanonical_b64(data: bytes) -> str:
    """Valid-looking base64 of ``data`` whose unused trailing bits are not zero.

    Lenient decoders return ``data``; a canonical check (re-encode and compare) refuses it.
    Needs ``len(data) % 3 != 0`` (otherwise there are no unused bits).
    """
    text = b64(data)
    pad = len(text) - len(text.rstrip("="))
    if pad == 0:
        raise TemplateError("data of a multiple of 3 bytes has no unused base64 bits")
    # One '=' leaves 2 unused bits in the last digit, two '=' leave 4; set the lowest one.
    last = len(text) - pad - 1
    index = _B64.index(text[last]) | 1
    return text[:last] + _B64[index] + text[last + 1 :]


def wrapped_b64(data: bytes) -> str:
    """Base64 broken into 76-character lines, as MIME does (a JSON ``\\n`` escape each)."""
    text = b64(data)
    return "\\n".join(text[i : i + 76] for i in range(0, len(text), 76))


@dataclass(frozen=True)
class Signed:
    """What a template is expanded against: the payload, its type and the keys by role."""

    payload: bytes
    payload_type: str
    keys: Mapping[str, NodeKey]

    def _key(self, role: str | None, name: str) -> NodeKey:
        if role is None or role not in self.keys:
            raise TemplateError(f"placeholder {name} needs a known key role, not {role!r}")
        return self.keys[role]

    def _signature(self, role: str | None, name: str) -> bytes:
        key = self._key(role, name)
        return key.signing_key.sign(pae(self.payload_type, self.payload)).signature

    def value(self, name: str, role: str | None) -> str:
        payload = self.payload
        if name == "payload":
            return b64(payload)
        if name == "payload_nopad":
            return b64(payload).rstrip("=")
        if name == "payload_ws":
            return wrapped_b64(payload)
        if name == "payload_urlsafe":
            return base64.urlsafe_b64encode(payload).decode("ascii")
        if name == "payload_noncanon":
            return noncanonical_b64(payload)
        if name == "keyid":
            return self._key(role, name).key_id
        if name == "KEYID":
            return self._key(role, name).key_id.upper()
        if name.startswith("sig"):
            sig = self._signature(role, name)
            variants = {
                "sig": lambda: b64(sig),
                "sig_nopad": lambda: b64(sig).rstrip("="),
                "sig_noncanon": lambda: noncanonical_b64(sig),
                "sig_flipped": lambda: b64(bytes([sig[0] ^ 1]) + sig[1:]),
                "sig_short": lambda: b64(sig[:63]),
            }
            if name in variants:
                return variants[name]()
        raise TemplateError(f"unknown placeholder {name}")


def expand(template: str, signed: Signed) -> bytes:
    """The request body: every placeholder replaced, encoded as UTF-8."""
    return _PLACEHOLDER.sub(lambda m: signed.value(m.group(1), m.group(2)), template).encode()


def envelope_template(payload_type: str, role: str = "current") -> str:
    """The canonical (RFC 8785) envelope text with placeholders: the valid form."""
    return (
        '{"payload":"${payload}","payloadType":"' + payload_type + '","signatures":'
        '[{"keyid":"${keyid:' + role + '}","sig":"${sig:' + role + '}"}]}'
    )


@dataclass(frozen=True)
class Binding:
    """How to move a vector onto live keys: exact quoted strings to replace, and a clock shift.

    Every replacement is a whole JSON string value (quotes included) and every timestamp moves
    by the same whole number of seconds, so a valid payload stays valid, an invalid one stays
    invalid for the same reason, and canonical bytes stay canonical (keys do not change).
    """

    strings: Mapping[str, str]
    shift: timedelta
    report_id: Callable[[str], str] | None = field(default=None)

    def apply(self, payload: bytes) -> bytes:
        for old, new in self.strings.items():
            payload = payload.replace(f'"{old}"'.encode(), f'"{new}"'.encode())
        fresh = self.report_id
        if fresh is not None:
            payload = _REPORT_ID.sub(
                lambda m: b'"' + fresh(m.group(1).decode()).encode() + b'"', payload
            )
        if not self.shift:
            return payload

        def moved(match: re.Match[bytes]) -> bytes:
            try:
                when = datetime.strptime(match.group(1).decode(), "%Y-%m-%dT%H:%M:%S")
            except ValueError:  # an impossible date (a negative vector): refused at any time
                return match.group(1)
            return (when + self.shift).strftime("%Y-%m-%dT%H:%M:%S").encode()

        return _TIMESTAMP.sub(moved, payload)
