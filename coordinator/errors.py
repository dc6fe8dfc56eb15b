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
