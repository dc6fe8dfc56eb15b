"""Membership, federation-key relay, audit and token endpoints (a router of the API)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from coordinator import audit, membership
from coordinator.auth import Role, Scope, create_token, list_tokens, revoke_token
from coordinator.config import CoordinatorSettings
from coordinator.deps import PrincipalDep, SessionDep
from coordinator.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RegistryError,
    TokenError,
)
from coordinator.models import AuditRow
from coordinator.openapi import NODE_ROTATE_BODY
from coordinator.registry import add_node, revoke_key, revoke_node
from coordinator.rotation import rotate_by_node, rotation_body
from protocol.models import UtcDatetime


class _In(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class InvitationIn(_In):
    country: str = Field(min_length=2, max_length=2)
    ttl_hours: float | None = Field(default=None, gt=0, le=24 * 90)
    note: str | None = Field(default=None, max_length=200)


class InvitationOut(_Out):
    invitation_id: str
    code: str  # shown once; hand it to the new node's operator out of band
    country: str
    expires_at: UtcDatetime


class EnrollIn(_In):
    invitation: str = Field(max_length=200)
    node_id: str = Field(max_length=63)
    country: str = Field(max_length=2)
    operator: str = Field(max_length=200)
    ed25519_public_key: str = Field(max_length=64)
    x25519_public_key: str = Field(max_length=64)


class EnrollOut(_Out):
    node_id: str
    key_id: str
    status: str
    node_token: str  # shown once
    token_expires_at: UtcDatetime


class MemberOut(_Out):
    node_id: str
    status: str


class RotateIn(_In):
    public_key: str = Field(max_length=64)
    overlap_hours: float | None = Field(default=None, ge=0, le=24 * 90)


class RotateOut(_Out):
    node_id: str
    key_id: str


class NodeRotateIn(_In):
    """A node's own rotation request (see coordinator.rotation): two DSSE envelopes."""

    announcement: dict[str, Any]  # signed with the current key
    proof: dict[str, Any]  # the same payload signed with the new key


class NodeRotateOut(_Out):
    node_id: str
    key_id: str
    status: str  # rotated | unchanged
    previous_valid_until: UtcDatetime | None


class RevokeOut(_Out):
    node_id: str
    revoked_key_ids: list[str]


class Recipient(_Out):
    node_id: str
    country: str
    status: str
    x25519_public_key: str


class Recipients(_Out):
    recipients: list[Recipient]


class SealedIn(_In):
    recipient: str = Field(max_length=63)
    recipient_x25519: str = Field(max_length=64)
    sealed_key: str = Field(max_length=8192)


class SealedOut(_Out):
    sponsor: str
    sealed_key: str
    created_at: UtcDatetime


class SealedList(_Out):
    sealed_keys: list[SealedOut]


class AuditEntry(_Out):
    seq: int
    at: UtcDatetime
    actor: str
    action: str
    subject: str
    details: str
    prev_hash: str
    entry_hash: str


class AuditPage(_Out):
    entries: list[AuditEntry]


class AuditCheck(_Out):
    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None
    reason: str | None


class TokenIn(_In):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    scopes: list[str] | None = None
    node_id: str | None = None
    ttl_days: float | None = Field(default=None, gt=0, le=3650)


class TokenOut(_Out):
    token_id: str
    name: str
    role: str
    scopes: list[str]
    node_id: str | None
    expires_at: UtcDatetime
    token: str | None = None  # only in the answer to its creation


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry.model_validate(row, from_attributes=True)


def members_router(settings: CoordinatorSettings, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/invitations", response_model=InvitationOut, summary="Invite a new node.")
    def post_invitation(
        body: InvitationIn, session: SessionDep, principal: PrincipalDep
    ) -> InvitationOut:
        principal.require(Scope.MEMBERS_WRITE)
        ttl = timedelta(hours=body.ttl_hours) if body.ttl_hours else settings.invitation_ttl
        issued = membership.create_invitation(
            session, country=body.country, ttl=ttl, now=clock(), actor=principal.name,
            note=body.note,
        )  # fmt: skip
        return InvitationOut(
            invitation_id=issued.row.invitation_id,
            code=issued.code,
            country=issued.row.country,
            expires_at=issued.row.expires_at,
        )

    @router.post(
        "/enroll",
        response_model=EnrollOut,
        summary="Enroll a node with an invitation code (no token: the invitation is the proof).",
    )
    def post_enroll(body: EnrollIn, session: SessionDep) -> EnrollOut:
        done = membership.enroll(
            session,
            invitation_code=body.invitation,
            node_id=body.node_id,
            country=body.country,
            operator=body.operator,
            ed25519_public_key=body.ed25519_public_key,
            x25519_public_key=body.x25519_public_key,
            now=clock(),
            token_ttl=settings.node_token_ttl,
        )
        return EnrollOut(
            node_id=done.node_id,
            key_id=done.key_id,
            status=done.status,
            node_token=done.token.token,
            token_expires_at=done.token.row.expires_at,
        )

    @router.post("/members/{node_id}/approve", response_model=MemberOut)
    def post_approve(node_id: str, session: SessionDep, principal: PrincipalDep) -> MemberOut:
        principal.require(Scope.MEMBERS_WRITE)
        node = membership.approve(session, node_id, now=clock(), actor=principal.name)
        return MemberOut(node_id=node.node_id, status=node.status)

    @router.post(
        "/members/{node_id}/keys",
        response_model=RotateOut,
        summary="Rotate: add a key; the node's other keys stay valid for the overlap window.",
    )
    def post_rotate(
        node_id: str, body: RotateIn, session: SessionDep, principal: PrincipalDep
    ) -> RotateOut:
        principal.require(Scope.MEMBERS_WRITE)
        overlap = (
            timedelta(hours=body.overlap_hours)
            if body.overlap_hours is not None
            else settings.key_overlap
        )
        from coordinator.models import NodeRow

        node = session.get(NodeRow, node_id)
        if node is None:
            raise NotFound(f"no node with id {node_id}")
        try:
            reg = add_node(
                session, node_id=node_id, country=node.country, public_key_b64=body.public_key,
                now=clock(), overlap=overlap, actor=principal.name,
            )  # fmt: skip
        except RegistryError as exc:
            raise Conflict(str(exc)) from exc
        return RotateOut(node_id=reg.node_id, key_id=reg.key_id)

    @router.post(
        "/keys/rotate",
        response_model=NodeRotateOut,
        summary="A node rotates its own signing key (signed by the current and the new key).",
        description="No token: the announcement's signature by the node's current key is the "
        "proof of identity, the proof's signature by the new key the proof of possession.",
        # issue 12: the body is read raw and strictly (rotation_body); this documents it.
        openapi_extra=NODE_ROTATE_BODY,
    )
    def post_node_rotate(
        body: Annotated[tuple[dict[str, Any], dict[str, Any]], Depends(rotation_body)],
        session: SessionDep,
    ) -> NodeRotateOut:
        done = rotate_by_node(
            session, body[0], body[1], now=clock(), max_overlap=settings.key_overlap
        )
        return NodeRotateOut(
            node_id=done.node_id,
            key_id=done.key_id,
            status=done.status,
            previous_valid_until=done.previous_valid_until,
        )

    @router.post("/members/{node_id}/revoke", response_model=RevokeOut)
    def post_revoke(node_id: str, session: SessionDep, principal: PrincipalDep) -> RevokeOut:
        principal.require(Scope.MEMBERS_WRITE)
        try:
            revoked = revoke_node(session, node_id, now=clock(), actor=principal.name)
        except RegistryError as exc:
            raise NotFound(str(exc)) from exc
        return RevokeOut(node_id=node_id, revoked_key_ids=revoked)

    @router.post("/keys/{key_id}/revoke", response_model=RevokeOut)
    def post_revoke_key(key_id: str, session: SessionDep, principal: PrincipalDep) -> RevokeOut:
        principal.require(Scope.MEMBERS_WRITE)
        try:
            row = revoke_key(session, key_id, now=clock(), actor=principal.name)
        except RegistryError as exc:
            raise NotFound(str(exc)) from exc
        return RevokeOut(node_id=row.node_id, revoked_key_ids=[key_id])

    # --- federation-key relay: node tokens only; the coordinator stores opaque blobs --------

    def _node_of(principal: PrincipalDep) -> str:
        principal.require(Scope.FEDERATION_RELAY)
        if principal.node_id is None:
            raise Forbidden("the federation-key relay is for node tokens")
        return principal.node_id

    @router.get("/federation-key/recipients", response_model=Recipients)
    def get_recipients(session: SessionDep, principal: PrincipalDep) -> Recipients:
        sponsor = _node_of(principal)
        return Recipients(
            recipients=[
                Recipient(
                    node_id=n.node_id,
                    country=n.country,
                    status=n.status,
                    x25519_public_key=n.x25519_public_key or "",
                )
                for n in membership.members_needing_key(session, sponsor)
            ]
        )

    @router.post("/federation-key/sealed", response_model=MemberOut)
    def post_sealed(body: SealedIn, session: SessionDep, principal: PrincipalDep) -> MemberOut:
        sponsor = _node_of(principal)
        if body.recipient == sponsor:
            raise InvalidRequest("a node cannot sponsor itself")
        membership.post_sealed_key(
            session, sponsor=sponsor, recipient=body.recipient,
            recipient_x25519=body.recipient_x25519, sealed_b64=body.sealed_key, now=clock(),
        )  # fmt: skip
        return MemberOut(node_id=body.recipient, status="sealed")

    @router.get("/federation-key/sealed", response_model=SealedList)
    def get_sealed(session: SessionDep, principal: PrincipalDep) -> SealedList:
        me = _node_of(principal)
        return SealedList(
            sealed_keys=[
                SealedOut(sponsor=r.sponsor_node, sealed_key=r.sealed_blob, created_at=r.created_at)
                for r in membership.sealed_keys_for(session, me)
            ]
        )

    # --- audit log --------------------------------------------------------------------------

    @router.get("/audit", response_model=AuditPage)
    def get_audit(
        session: SessionDep,
        principal: PrincipalDep,
        after: Annotated[int, Query(ge=0, description="Entries after this seq.")] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> AuditPage:
        principal.require(Scope.AUDIT_READ)
        return AuditPage(
            entries=[_entry(r) for r in audit.entries(session, after=after, limit=limit)]
        )

    @router.get("/audit/verify", response_model=AuditCheck)
    def get_audit_verify(session: SessionDep, principal: PrincipalDep) -> AuditCheck:
        principal.require(Scope.AUDIT_READ)
        check = audit.verify(session)
        return AuditCheck(
            ok=check.ok,
            entries=check.entries,
            head_hash=check.head_hash,
            first_bad_seq=check.first_bad_seq,
            reason=check.reason,
        )

    # --- tokens -----------------------------------------------------------------------------

    @router.post("/tokens", response_model=TokenOut)
    def post_token(body: TokenIn, session: SessionDep, principal: PrincipalDep) -> TokenOut:
        principal.require(Scope.TOKENS_WRITE)
        ttl = timedelta(days=body.ttl_days) if body.ttl_days else settings.token_ttl
        try:
            issued = create_token(
                session, name=body.name, role=body.role, scopes=body.scopes, node_id=body.node_id,
                now=clock(), ttl=ttl, actor=principal.name,
            )  # fmt: skip
        except TokenError as exc:
            raise InvalidRequest(str(exc)) from exc
        row = issued.row
        return TokenOut(
            token_id=row.token_id, name=row.name, role=row.role, scopes=row.scopes.split(),
            node_id=row.node_id, expires_at=row.expires_at, token=issued.token,
        )  # fmt: skip

    @router.get("/tokens", response_model=list[TokenOut])
    def get_tokens(session: SessionDep, principal: PrincipalDep) -> list[TokenOut]:
        principal.require(Scope.TOKENS_WRITE)
        return [
            TokenOut(
                token_id=r.token_id,
                name=r.name,
                role=r.role,
                scopes=r.scopes.split(),
                node_id=r.node_id,
                expires_at=r.expires_at,
            )
            for r in list_tokens(session)
        ]

    @router.post("/tokens/{token_id}/revoke", response_model=MemberOut)
    def post_token_revoke(token_id: str, session: SessionDep, principal: PrincipalDep) -> MemberOut:
        principal.require(Scope.TOKENS_WRITE)
        try:
            revoke_token(session, token_id, now=clock(), actor=principal.name)
        except TokenError as exc:
            raise NotFound(str(exc)) from exc
        return MemberOut(node_id=token_id, status="revoked")

    return router
