"""One exception type per verification failure, each with a stable wire code.

Receivers map these to JSON errors ``{"error": {"code": ..., "message": ...}}``; the codes are
part of the protocol (docs/protocol.md lists them) and never change meaning.
"""


class ProtocolError(Exception):
    """Base class: every protocol failure has a stable machine-readable code."""

    code = "protocol_error"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedEnvelope(ProtocolError):
    code = "malformed_envelope"


class UnknownPayloadType(ProtocolError):
    code = "unknown_payload_type"


class BadSignature(ProtocolError):
    code = "bad_signature"
    http_status = 401


class UnknownKey(ProtocolError):
    code = "unknown_key"
    http_status = 401


class RevokedKey(ProtocolError):
    code = "revoked_key"
    http_status = 403


class KeyMismatch(ProtocolError):
    """The signing key is valid but does not belong to the node named in the payload."""

    code = "key_mismatch"
    http_status = 403


class MalformedPayload(ProtocolError):
    code = "malformed_payload"
    http_status = 422


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"


class ReplayedReport(ProtocolError):
    """A report id already stored with different bytes (an exact resend is acknowledged)."""

    code = "replayed_report"
    http_status = 409


class SequenceRegression(ProtocolError):
    code = "sequence_regression"
    http_status = 409


class StaleTimestamp(ProtocolError):
    code = "stale_timestamp"


ALL_ERRORS: tuple[type[ProtocolError], ...] = (
    MalformedEnvelope,
    UnknownPayloadType,
    BadSignature,
    UnknownKey,
    RevokedKey,
    KeyMismatch,
    MalformedPayload,
    UnsupportedVersion,
    ReplayedReport,
    SequenceRegression,
    StaleTimestamp,
)
