"""Wire formats shared by every LIBRA component.

This package imports none of the others: a partner agency can implement a node from
this package and docs/protocol.md alone.
"""

PROTOCOL_VERSION = 1
REPORT_PAYLOAD_TYPE = "application/vnd.libra.report+json; version=1"
# A node's announcement of its next signing key (POST /v1/keys/rotate; docs/protocol.md).
KEY_ROTATION_PAYLOAD_TYPE = "application/vnd.libra.key-rotation+json; version=1"

__all__ = ["KEY_ROTATION_PAYLOAD_TYPE", "PROTOCOL_VERSION", "REPORT_PAYLOAD_TYPE"]
