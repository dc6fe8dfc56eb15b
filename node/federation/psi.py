"""This node's side of PSI-cardinality (issue 15): offer, answer and run sessions through the
coordinator's relay (coordinator/psi/api.py) with the messages of protocol/psi.py.

The node's set for a family is its live list entries of that family (not retired, not
disabled: exactly what the matcher loads), values decrypted with the list key as the matcher
reads them. It leaves this module only inside openmined-psi's encrypted request and setup
messages. Consent is needed on both sides: the initiator's signed offer, the responder's signed
``accept``. Before it sends any step, a node checks that the session carries both signatures
(its own verified with its own key, so a coordinator cannot fake its consent). The client and
server keys are derived per session from the node's signing key (protocol.psi.derive_key), so
``run`` can be repeated after any interruption and no PSI key is ever stored.

Every offer, answer, sending run and result is appended to the node's audit log (node.audit):
session id, peer, family, set sizes and the cardinality, never a value.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from nacl.signing import VerifyKey
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.audit import AuditEvent
from node.federation.enroll import coordinator_client
from node.models import ListEntry
from protocol.errors import ProtocolError, UnknownKey
from protocol.keys import NodeKey, decode_public_key
from protocol.models import ErrorResponse
from protocol.psi import (
    DEFAULT_TTL,
    PSI_FAMILIES,
    PsiConsent,
    PsiMessage,
    PsiOffer,
    PsiStep,
    StepError,
    cardinality,
    client_request,
    derive_key,
    open_message,
    request_size,
    server_answer,
    sign_message,
)

SESSIONS = "/v1/psi/sessions"
RESULT_ACTION = "psi.result"


class PsiError(Exception):
    """A PSI command cannot go on; the message says why (and what to do)."""


@dataclass(frozen=True)
class PsiContext:
    """What every PSI call needs: this node, its keys and database, the coordinator."""

    engine: Engine
    node_id: str
    key: NodeKey
    coordinator_url: str
    token: str
    clock: Callable[[], datetime]
    transport: httpx.BaseTransport | None = None


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    initiator: str
    responder: str
    family: str
    status: str
    expires_at: str
    steps: list[tuple[str, str]]
    # The key id that signed the peer's offer or consent (empty before the peer signed):
    # compare it with the peer out of band, the coordinator's registry vouches for it.
    peer_key_id: str = ""

    def peer_of(self, node_id: str) -> str:
        return self.responder if node_id == self.initiator else self.initiator


@dataclass
class RunResult:
    session: SessionInfo
    sent: list[str] = field(default_factory=list)  # the steps this run posted
    own_size: int | None = None
    peer_size: int | None = None
    cardinality: int | None = None
    waiting_for: str = ""  # what is missing when not done

    @property
    def done(self) -> bool:
        return self.cardinality is not None


# --------------------------------------------------------------------------- the relay


@contextmanager
def _http(ctx: PsiContext) -> Iterator[httpx.Client]:
    with coordinator_client(ctx.coordinator_url, ctx.token, ctx.transport) as client:
        yield client


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        try:
            body = ErrorResponse.model_validate(response.json())
            detail = f"{body.error.code}: {body.error.message}"
        except (ValueError, ValidationError):
            detail = response.text[:200]
        raise PsiError(f"coordinator answered {response.status_code} ({detail})")
    try:
        data: dict[str, Any] = response.json()
    except ValueError as exc:
        raise PsiError("the coordinator's answer is not JSON") from exc
    return data


def _call(ctx: PsiContext, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    with _http(ctx) as client:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PsiError(f"cannot reach the coordinator: {exc}") from exc
    return _answer(response)


def _post_signed(ctx: PsiContext, path: str, message: PsiOffer | PsiConsent | PsiMessage) -> Any:
    envelope = sign_message(message, ctx.key)
    return _call(ctx, "POST", path, json=envelope.to_json())


def _info(data: dict[str, Any]) -> SessionInfo:
    try:
        return SessionInfo(
            session_id=str(data["session_id"]),
            initiator=str(data["initiator"]),
            responder=str(data["responder"]),
            family=str(data["family"]),
            status=str(data["status"]),
            expires_at=str(data["expires_at"]),
            steps=[(str(s["sender"]), str(s["step"])) for s in data["steps"]],
        )
    except (KeyError, TypeError) as exc:
        raise PsiError("the coordinator's session answer is malformed") from exc


# --------------------------------------------------------------------------- verification


def _resolver(ctx: PsiContext, keys: dict[str, str], signer: str) -> Callable[[str], VerifyKey]:
    """Keys as the coordinator's registry reports them; this node's own envelopes must carry
    its own current key (the coordinator cannot make this node consent to anything)."""

    def resolve(keyid: str) -> VerifyKey:
        if signer == ctx.node_id:
            if keyid != ctx.key.key_id:
                raise UnknownKey(f"this node did not sign with key {keyid}")
            return ctx.key.verify_key
        if keyid not in keys:
            raise UnknownKey(f"the coordinator gave no public key for {keyid}")
        return decode_public_key(keys[keyid])

    return resolve


def _opened(
    ctx: PsiContext, envelope: Any, model: type[Any], keys: dict[str, str], signer: str, what: str
) -> tuple[Any, str]:
    """(the verified message, the key id that signed it)."""
    try:
        message, keyid, _ = open_message(envelope, model, _resolver(ctx, keys, signer))
    except ProtocolError as exc:
        raise PsiError(f"{what} does not verify as signed by {signer}: {exc.message}") from exc
    return message, keyid


def _verified_session(ctx: PsiContext, data: dict[str, Any]) -> SessionInfo:
    """The session, after checking the offer (initiator's) and any consent (responder's)."""
    info = _info(data)
    if ctx.node_id not in (info.initiator, info.responder):
        raise PsiError(f"this node is not a party to session {info.session_id}")
    keys = data.get("signing_keys") or {}
    offer, offer_key = _opened(ctx, data.get("offer"), PsiOffer, keys, info.initiator, "the offer")
    peer_key = offer_key if info.responder == ctx.node_id else ""
    if (offer.session_id, offer.initiator, offer.responder, offer.family) != (
        info.session_id,
        info.initiator,
        info.responder,
        info.family,
    ):
        raise PsiError("the signed offer does not match the session the coordinator describes")
    if info.status in ("accepted", "declined"):
        consent, consent_key = _opened(
            ctx, data.get("consent"), PsiConsent, keys, info.responder, "the consent"
        )
        if info.initiator == ctx.node_id:
            peer_key = consent_key
        expected = "accept" if info.status == "accepted" else "decline"
        if (consent.session_id, consent.node_id, consent.decision) != (
            info.session_id,
            info.responder,
            expected,
        ):
            raise PsiError("the signed consent does not match the session's status")
    return replace(info, peer_key_id=peer_key)


def _messages(ctx: PsiContext, info: SessionInfo) -> dict[tuple[str, str], bytes]:
    """(sender, step) -> protobuf bytes, each message verified as signed by its sender."""
    data = _call(ctx, "GET", f"{SESSIONS}/{info.session_id}/messages")
    keys = data.get("signing_keys") or {}
    found: dict[tuple[str, str], bytes] = {}
    for item in data.get("messages", []):
        sender = str(item.get("sender"))
        if sender not in (info.initiator, info.responder):
            raise PsiError(f"a message of session {info.session_id} names sender {sender}")
        message, _ = _opened(
            ctx, item.get("envelope"), PsiMessage, keys, sender, f"{sender}'s step"
        )
        if message.session_id != info.session_id or message.sender != sender:
            raise PsiError("a step message names another session or sender")
        found[(sender, message.step)] = message.body_bytes()
    return found


# --------------------------------------------------------------------------- the set


def family_filter(family: str) -> tuple[str, str]:
    """A PSI family -> (list entry family, media): "video-sha256" is a video file's SHA-256."""
    if family not in PSI_FAMILIES:
        raise PsiError(f"family must be one of {', '.join(PSI_FAMILIES)}, not {family!r}")
    if family.startswith("video-"):
        return family.removeprefix("video-"), "video"
    return family, "image"


def load_set(engine: Engine, family: str) -> list[str]:
    """This node's live entries of the family: the values the matcher would match."""
    from node.matching.matcher import matchable

    entry_family, media = family_filter(family)
    with Session(engine) as session:
        rows = session.exec(
            select(ListEntry.value).where(
                matchable(),
                col(ListEntry.family) == entry_family,
                col(ListEntry.media) == media,
            )
        )
        return sorted(set(rows))


# --------------------------------------------------------------------------- commands


def offer(ctx: PsiContext, peer: str, family: str, ttl: timedelta = DEFAULT_TTL) -> SessionInfo:
    """Offer ``peer`` a session on ``family`` (signing the offer is this node's consent)."""
    family_filter(family)
    now = ctx.clock()
    try:
        message = PsiOffer(
            session_id=secrets.token_hex(16),
            initiator=ctx.node_id,
            responder=peer,
            family=family,
            created_at=now,
            expires_at=now + ttl,
        )
    except ValidationError as exc:
        raise PsiError(f"invalid offer: {exc.errors()[0]['msg']}") from exc
    data = _post_signed(ctx, SESSIONS, message)
    info = _info(data["session"])
    audit.log(
        ctx.engine,
        "psi.offer",
        subject=f"psi:{info.session_id}",
        details={"peer": peer, "family": family, "expires_at": info.expires_at},
    )
    return info


def sessions(ctx: PsiContext, *, incoming: bool = False) -> list[SessionInfo]:
    data = _call(ctx, "GET", SESSIONS, params={"incoming": "true" if incoming else "false"})
    return [_verified_session(ctx, item) for item in data.get("sessions", [])]


def answer(ctx: PsiContext, session_id: str, *, accept: bool) -> SessionInfo:
    """Accept or decline an offer addressed to this node."""
    info = _verified_session(ctx, _call(ctx, "GET", f"{SESSIONS}/{session_id}"))
    if info.responder != ctx.node_id:
        raise PsiError(f"session {session_id} was offered by this node; only its peer answers")
    message = PsiConsent(
        session_id=session_id,
        node_id=ctx.node_id,
        decision="accept" if accept else "decline",
        created_at=ctx.clock(),
    )
    data = _post_signed(ctx, f"{SESSIONS}/{session_id}/consent", message)
    info = _info(data["session"])
    audit.log(
        ctx.engine,
        "psi.accept" if accept else "psi.decline",
        subject=f"psi:{session_id}",
        details={"peer": info.initiator, "family": info.family},
    )
    return info


def _post_step(ctx: PsiContext, session_id: str, step: PsiStep, body: bytes) -> None:
    message = PsiMessage(
        session_id=session_id,
        sender=ctx.node_id,
        step=step,
        created_at=ctx.clock(),
        body=base64.b64encode(body).decode("ascii"),
    )
    _post_signed(ctx, f"{SESSIONS}/{session_id}/messages", message)


def _audited_result(engine: Engine, session_id: str) -> bool:
    with Session(engine) as session:
        found = session.exec(
            select(AuditEvent.id).where(
                col(AuditEvent.action) == RESULT_ACTION,
                col(AuditEvent.subject) == f"psi:{session_id}",
            )
        ).first()
    return found is not None


def run(ctx: PsiContext, session_id: str) -> RunResult:
    """Do every step this node can now; the cardinality once the peer's answer is there.

    Idempotent: steps already posted are not posted again, and the result is audited once.
    Sends nothing unless the session carries both nodes' signed consent."""
    info = _verified_session(ctx, _call(ctx, "GET", f"{SESSIONS}/{session_id}"))
    result = RunResult(info)
    if info.status == "declined":
        raise PsiError(f"session {session_id} was declined by {info.responder}")
    if info.status != "accepted":
        if info.responder == ctx.node_id:
            raise PsiError(
                f"session {session_id} is not accepted: this node sends nothing before "
                f"`libra node psi accept {session_id}`"
            )
        result.waiting_for = f"{info.responder}'s consent"
        return result
    me, peer = ctx.node_id, info.peer_of(ctx.node_id)
    secret = ctx.key.signing_key.encode()
    client_key = derive_key(secret, session_id, "client")
    server_key = derive_key(secret, session_id, "server")
    found = _messages(ctx, info)
    items: list[str] | None = None
    try:
        if (me, "request") not in found:
            items = load_set(ctx.engine, info.family)
            found[(me, "request")] = client_request(client_key, items)
            _post_step(ctx, session_id, "request", found[(me, "request")])
            result.sent.append("request")
        result.own_size = request_size(found[(me, "request")])
        if (peer, "request") in found and not {(me, "setup"), (me, "response")} <= set(found):
            if items is None:
                items = load_set(ctx.engine, info.family)
            setup, response = server_answer(server_key, items, found[(peer, "request")])
            answers: list[tuple[PsiStep, bytes]] = [("setup", setup), ("response", response)]
            for step, body in answers:
                if (me, step) not in found:
                    _post_step(ctx, session_id, step, body)
                    result.sent.append(step)
        if (peer, "request") in found:
            result.peer_size = request_size(found[(peer, "request")])
        if (peer, "setup") in found and (peer, "response") in found:
            result.cardinality = cardinality(
                client_key, found[(peer, "setup")], found[(peer, "response")]
            )
    except StepError as exc:
        raise PsiError(f"session {session_id}: {exc}") from exc
    details: dict[str, Any] = {"peer": peer, "family": info.family, "own_size": result.own_size}
    if result.sent:
        audit.log(
            ctx.engine,
            "psi.send",
            subject=f"psi:{session_id}",
            details={**details, "steps": result.sent},
        )
    if result.done:
        if not _audited_result(ctx.engine, session_id):
            audit.log(
                ctx.engine,
                RESULT_ACTION,
                subject=f"psi:{session_id}",
                details={
                    **details,
                    "peer_size": result.peer_size,
                    "cardinality": result.cardinality,
                },
            )
    else:
        result.waiting_for = f"{peer}'s " + (
            "request" if (peer, "request") not in found else "setup and response"
        )
    return result
