"""The PSI relay's HTTP routes (``/v1/psi/...``): node tokens only, signed envelopes only.

The bodies of POST routes are DSSE envelopes (protocol/psi.py) read as raw bytes, like
reports; the caller is its node token (scope federation:relay) and must be the envelope's
signer. Answers carry the signed envelopes as stored, plus the public keys that signed them,
so each node verifies the other's signatures itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from protocol.models import UtcDatetime
from protocol.psi import (
    MAX_BODY_CHARS,
    PSI_CONSENT_PAYLOAD_TYPE,
    PSI_MESSAGE_PAYLOAD_TYPE,
    PSI_OFFER_PAYLOAD_TYPE,
    SESSION_ID_PATTERN,
)

from ..auth import Principal, Scope
from ..db import new_session
from ..deps import PrincipalDep, SessionDep
from ..errors import Forbidden
from ..rawbody import read_limited, require_json
from . import relay
from .models import PsiMessageRow, PsiSessionRow

MAX_SMALL_BODY = 16 * 1024  # an offer or consent envelope is a few hundred bytes
MAX_MESSAGE_BODY = 2 * MAX_BODY_CHARS + 16 * 1024  # base64 of the payload holding base64


def _envelope_body(payload_type: str, what: str) -> dict[str, Any]:
    """The OpenAPI request body of a raw-body route: a DSSE envelope of this payload type."""
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["payloadType", "payload", "signatures"],
        "properties": {
            "payloadType": {"type": "string", "enum": [payload_type]},
            "payload": {"type": "string", "description": f"base64 of the canonical {what}"},
            "signatures": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["keyid", "sig"],
                    "properties": {
                        "keyid": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "sig": {"type": "string"},
                    },
                },
            },
        },
    }
    return {
        "requestBody": {
            "required": True,
            "description": f"A DSSE envelope signed by the calling node: {what} "
            "(docs/protocol.md, PSI-cardinality).",
            "content": {"application/json": {"schema": schema}},
        }
    }


SessionIdPath = Annotated[str, Path(pattern=SESSION_ID_PATTERN, description="32 hex digits.")]


class StepInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    sender: str
    step: str
    bytes: int


class SessionOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    session_id: str
    initiator: str
    responder: str
    family: str
    status: Literal["offered", "accepted", "declined"]
    created_at: UtcDatetime
    expires_at: UtcDatetime
    offer: dict[str, Any]  # the initiator's DSSE envelope
    consent: dict[str, Any] | None  # the responder's, once it answered
    steps: list[StepInfo]
    signing_keys: dict[str, str]  # key id -> public key (base64) of the envelopes' signers


class SessionPosted(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: str  # created | decided | stored | unchanged
    session: SessionOut


class SessionList(BaseModel):
    model_config = ConfigDict(frozen=True)
    sessions: list[SessionOut]


class MessageOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    sender: str
    step: str
    envelope: dict[str, Any]


class MessageList(BaseModel):
    model_config = ConfigDict(frozen=True)
    session_id: str
    messages: list[MessageOut]
    signing_keys: dict[str, str]


def _node_of(principal: Principal) -> str:
    principal.require(Scope.FEDERATION_RELAY)
    if principal.node_id is None:
        raise Forbidden("the PSI relay is for node tokens")
    return principal.node_id


def _session_out(session: Session, row: PsiSessionRow) -> SessionOut:
    messages = relay.messages_of(session, row.session_id)
    signed = [row.offer, *([row.consent] if row.consent else [])]
    return SessionOut(
        session_id=row.session_id,
        initiator=row.initiator,
        responder=row.responder,
        family=row.family,
        status=row.status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        offer=json.loads(row.offer),
        consent=json.loads(row.consent) if row.consent else None,
        steps=[StepInfo(sender=m.sender, step=m.step, bytes=m.body_bytes) for m in messages],
        signing_keys=relay.signing_keys(session, signed),
    )


def _message_out(row: PsiMessageRow) -> MessageOut:
    return MessageOut(sender=row.sender, step=row.step, envelope=json.loads(row.envelope))


def psi_router(
    clock: Callable[[], datetime], write_lock: AbstractContextManager[Any] | threading.Lock
) -> APIRouter:
    router = APIRouter(prefix="/v1/psi", tags=["psi"])
    errors: dict[int | str, dict[str, Any]] = {
        401: {"description": "unauthenticated / bad_signature / unknown_key"},
        403: {"description": "forbidden: not a node token, or not this node's to do"},
        404: {"description": "not_found: no such session for this node (or expired)"},
        409: {"description": "conflict: not accepted yet, or a different message exists"},
        413: {"description": "too_large"},
        415: {"description": "unsupported_media_type"},
        422: {"description": "malformed_envelope / malformed_payload / invalid_request"},
    }

    async def _write(
        request: Request, principal: Principal, limit: int, work: Callable[..., Any]
    ) -> Any:
        node_id = _node_of(principal)
        require_json(request)
        body = await read_limited(request, limit)
        now = clock()
        engine = request.app.state.engine

        def run() -> Any:
            with write_lock, new_session(engine) as session:
                relay.purge_expired(session, now)
                return work(session, body, node_id, now)

        return await run_in_threadpool(run)

    @router.post(
        "/sessions",
        response_model=SessionPosted,
        responses=errors,
        summary="Offer a PSI-cardinality session to another node (body: signed PsiOffer).",
        openapi_extra=_envelope_body(PSI_OFFER_PAYLOAD_TYPE, "PsiOffer"),
    )
    async def post_session(request: Request, principal: PrincipalDep) -> SessionPosted:
        def work(session: Session, body: bytes, node_id: str, now: datetime) -> SessionPosted:
            stored = relay.create_session(session, body, node_id, now)
            return SessionPosted(status=stored.status, session=_session_out(session, stored.row))

        result: SessionPosted = await _write(request, principal, MAX_SMALL_BODY, work)
        return result

    @router.get(
        "/sessions",
        response_model=SessionList,
        responses=errors,
        summary="This node's PSI sessions (incoming=true: offers awaiting its answer).",
    )
    def get_sessions(
        session: SessionDep,
        principal: PrincipalDep,
        incoming: Annotated[bool, Query(description="Only offers awaiting an answer.")] = False,
    ) -> SessionList:
        node_id = _node_of(principal)
        rows = relay.sessions_for(session, node_id, clock(), incoming=incoming)
        return SessionList(sessions=[_session_out(session, row) for row in rows])

    @router.get(
        "/sessions/{session_id}",
        response_model=SessionOut,
        responses=errors,
        summary="One session, for its two nodes only.",
    )
    def get_session(
        session_id: SessionIdPath, session: SessionDep, principal: PrincipalDep
    ) -> SessionOut:
        node_id = _node_of(principal)
        return _session_out(session, relay.party_session(session, session_id, node_id, clock()))

    @router.post(
        "/sessions/{session_id}/consent",
        response_model=SessionPosted,
        responses=errors,
        summary="The responder accepts or declines (body: signed PsiConsent).",
        openapi_extra=_envelope_body(PSI_CONSENT_PAYLOAD_TYPE, "PsiConsent"),
    )
    async def post_consent(
        session_id: SessionIdPath, request: Request, principal: PrincipalDep
    ) -> SessionPosted:
        def work(session: Session, body: bytes, node_id: str, now: datetime) -> SessionPosted:
            stored = relay.decide(session, session_id, body, node_id, now)
            return SessionPosted(status=stored.status, session=_session_out(session, stored.row))

        result: SessionPosted = await _write(request, principal, MAX_SMALL_BODY, work)
        return result

    @router.post(
        "/sessions/{session_id}/messages",
        response_model=SessionPosted,
        responses=errors,
        summary="Post one protocol step (body: signed PsiMessage); only after an accept.",
        openapi_extra=_envelope_body(PSI_MESSAGE_PAYLOAD_TYPE, "PsiMessage"),
    )
    async def post_message(
        session_id: SessionIdPath, request: Request, principal: PrincipalDep
    ) -> SessionPosted:
        def work(session: Session, body: bytes, node_id: str, now: datetime) -> SessionPosted:
            _, status = relay.post_message(session, session_id, body, node_id, now)
            row = relay.party_session(session, session_id, node_id, now)
            return SessionPosted(status=status, session=_session_out(session, row))

        result: SessionPosted = await _write(request, principal, MAX_MESSAGE_BODY, work)
        return result

    @router.get(
        "/sessions/{session_id}/messages",
        response_model=MessageList,
        responses=errors,
        summary="The session's step messages (both sides'), for its two nodes only.",
    )
    def get_messages(
        session_id: SessionIdPath,
        session: SessionDep,
        principal: PrincipalDep,
        sender: Annotated[
            str | None, Query(max_length=63, description="Only this sender's.")
        ] = None,
    ) -> MessageList:
        node_id = _node_of(principal)
        relay.party_session(session, session_id, node_id, clock())
        rows = [
            m
            for m in relay.messages_of(session, session_id)
            if sender is None or m.sender == sender
        ]
        return MessageList(
            session_id=session_id,
            messages=[_message_out(m) for m in rows],
            signing_keys=relay.signing_keys(session, [m.envelope for m in rows]),
        )

    return router
