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


class SequenceGap(ProtocolError):
    """A sequence more than MAX_SEQUENCE_STEP above the node's highest accepted one: refused
    so that one bad report cannot use up the node's sequence space (2^53 - 1)."""

    code = "sequence_gap"
    http_status = 409


class StaleTimestamp(ProtocolError):
    code = "stale_timestamp"


class BadPeriod(ProtocolError):
    """The report period is empty, too short or too long, or out of place against created_at."""

    code = "bad_period"
    http_status = 422


class SketchMismatch(ProtocolError):
    """A well-formed cell sketch whose estimate cannot be the cell's ``distinct``."""

    code = "sketch_mismatch"
    http_status = 422


class UnsupportedMediaType(ProtocolError):
    code = "unsupported_media_type"
    http_status = 415


class Unavailable(ProtocolError):
    """The documented answer to a server fault (never to bad input): retry after a while."""

    code = "unavailable"
    http_status = 503


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
    SequenceGap,
    StaleTimestamp,
    BadPeriod,
    SketchMismatch,
    UnsupportedMediaType,
    Unavailable,
)
