"""Token roles and the scopes they grant: plain enums, importable without the database (the
command line names roles in its options, and `libra coordinator --help` must start at once)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    NODE = "node"
    VIEWER = "viewer"
    AUDITOR = "auditor"


class Scope(StrEnum):
    PICTURE_READ = "picture:read"  # aggregates (suppressed small cells for viewers)
    PICTURE_DETAIL = "picture:detail"  # unsuppressed picture and per-node breakdown
    NODES_READ = "nodes:read"
    AUDIT_READ = "audit:read"
    MEMBERS_WRITE = "members:write"  # invitations, approval, rotation, revocation
    TOKENS_WRITE = "tokens:write"
    REPORTS_WRITE = "reports:write"
    FEDERATION_RELAY = "federation:relay"  # post / fetch sealed federation keys


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset(Scope),
    Role.NODE: frozenset({Scope.REPORTS_WRITE, Scope.FEDERATION_RELAY, Scope.NODES_READ}),
    Role.VIEWER: frozenset({Scope.PICTURE_READ, Scope.NODES_READ}),
    Role.AUDITOR: frozenset({Scope.AUDIT_READ, Scope.NODES_READ}),
}
