"""Coordinator-side errors.

Wire errors extend protocol.errors.ProtocolError so the HTTP layer maps all of them the same
way; registry errors are for the operator's CLI and never cross the wire.
"""

from __future__ import annotations

from protocol.errors import ProtocolError


class UnknownNode(ProtocolError):
    """The signing key is registered, but the node named in the payload is not."""

    code = "unknown_node"
    http_status = 403


class TooLarge(ProtocolError):
    code = "too_large"
    http_status = 413


class InvalidRequest(ProtocolError):
    """Query or body parameters that fail validation (not a signed-report defect)."""

    code = "invalid_request"
    http_status = 422


class RegistryError(Exception):
    """An operator command on the node registry cannot be carried out."""


class InvalidRegistration(RegistryError):
    pass


class DuplicateKey(RegistryError):
    pass


class NodeNotFound(RegistryError):
    pass


class KeyNotFound(RegistryError):
    pass


class NodeNotActive(ProtocolError):
    """The node enrolled but an admin has not approved it yet."""

    code = "node_not_active"
    http_status = 403


class ExpiredKey(ProtocolError):
    """The signing key had been replaced (rotation) before the report was created."""

    code = "expired_key"
    http_status = 403


class RateLimited(ProtocolError):
    """Answered with ``Retry-After: retry_after`` (whole seconds, at least 1)."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class Unauthenticated(ProtocolError):
    """No usable credentials: missing, malformed, unknown, expired or revoked token."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(ProtocolError):
    """Valid credentials whose role or scopes do not allow this request."""

    code = "forbidden"
    http_status = 403


class NotFound(ProtocolError):
    code = "not_found"
    http_status = 404


class Conflict(ProtocolError):
    code = "conflict"
    http_status = 409


class InvalidInvitation(ProtocolError):
    """Unknown invitation, wrong secret, expired, already used, or for another country."""

    code = "invalid_invitation"
    http_status = 403


class TokenError(RegistryError):
    """A token command cannot be carried out (unknown token, bad role or scope)."""
