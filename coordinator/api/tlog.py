"""Transparency-log endpoints (a router of the API): checkpoint, proofs, witness cosignatures.

Public, like a Certificate Transparency log: no API token. The log serves only tree sizes,
SHA-256 hashes and signatures (leaf data stays here; a node rebuilds its own leaves), and nodes
have no API token: they authenticate by signature, as for reports. A cosignature authenticates
itself (it must verify with the registered key of the node it names).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from coordinator import tlog
from coordinator.db import new_session
from coordinator.errors import InvalidRequest
from coordinator.rawbody import read_limited
from protocol.errors import UnsupportedMediaType
from protocol.keys import NodeKey

NOTE_MEDIA_TYPE = "text/plain; charset=utf-8"
MAX_NOTE_BYTES = 64 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_WITNESS = re.compile(r"^\u2014 libra\.node/([^ \n]{1,63}) ", re.MULTILINE)


class InclusionProof(BaseModel):
    leaf_index: int = Field(description="0-based index of the leaf in the log.")
    tree_size: int
    proof: list[str] = Field(description="RFC 9162 inclusion path, leaf side first, base64.")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64.")


class CosignatureAck(BaseModel):
    tree_size: int
    node_id: str


_NOTE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/plain": {
                "schema": {"type": "string"},
                "example": "libra.coordinator/0123456789abcdef\n7\n<base64 root>\n\n"
                "\u2014 libra.node/node-a <base64(key id || timestamp || signature)>\n",
            }
        },
    }
}


def tlog_router(
    clock: Callable[[], datetime],
    signing_key: Callable[[], NodeKey],
    write_lock: AbstractContextManager[Any],
) -> APIRouter:
    router = APIRouter(tags=["transparency log"])

    @router.get(
        "/v1/log/checkpoint",
        response_class=PlainTextResponse,
        summary="The newest signed checkpoint (C2SP tlog-checkpoint note) with cosignatures.",
        description="Leaves queued since the last checkpoint are sequenced first, so it covers "
        "every report accepted before the request. Signed with the coordinator's snapshot key "
        "(key name = origin line); witness lines are C2SP cosignature/v1.",
    )
    def get_checkpoint(request: Request) -> PlainTextResponse:
        engine = request.app.state.engine
        with write_lock, new_session(engine) as session:
            row = tlog.latest_checkpoint(session, signing_key(), clock())
            text = tlog.render_with_cosignatures(session, row)
        return PlainTextResponse(text, media_type=NOTE_MEDIA_TYPE)

    @router.get(
        "/v1/log/proof/inclusion",
        response_model=InclusionProof,
        responses={404: {"description": "not_found: no such leaf in that tree"}},
        summary="RFC 9162 inclusion proof of a leaf (by its hash) in a tree of a given size.",
    )
    def get_inclusion(
        request: Request,
        leaf_hash: Annotated[
            str, Query(description="SHA-256(0x00 || leaf data), 64 lowercase hex.")
        ],
        tree_size: Annotated[int, Query(ge=1, le=2**62, description="A checkpoint's size.")],
    ) -> InclusionProof:
        if not _HEX64.fullmatch(leaf_hash):
            raise InvalidRequest("leaf_hash must be 64 lowercase hex digits")
        with new_session(request.app.state.engine) as session:
            index, proof = tlog.prove_inclusion(session, bytes.fromhex(leaf_hash), tree_size)
        return InclusionProof(
            leaf_index=index, tree_size=tree_size, proof=[tlog.b64(p) for p in proof]
        )

    @router.get(
        "/v1/log/proof/consistency",
        response_model=ConsistencyProof,
        summary="RFC 9162 consistency proof that the tree of size first prefixes size second.",
    )
    def get_consistency(
        request: Request,
        first: Annotated[int, Query(ge=0, le=2**62)],
        second: Annotated[int, Query(ge=0, le=2**62)],
    ) -> ConsistencyProof:
        with new_session(request.app.state.engine) as session:
            proof = tlog.prove_consistency(session, first, second)
        return ConsistencyProof(first=first, second=second, proof=[tlog.b64(p) for p in proof])

    @router.post(
        "/v1/log/cosignatures",
        response_model=CosignatureAck,
        responses={
            401: {"description": "bad_signature: not the named node's registered key"},
            404: {"description": "not_found: this log signed no such checkpoint"},
            413: {"description": "too_large"},
            415: {"description": "unsupported_media_type"},
            422: {"description": "invalid_request / malformed note"},
        },
        summary="A node adds its witness cosignature (cosignature/v1) to a checkpoint.",
        description="Body: the checkpoint note as served, with the node's cosignature line "
        "named libra.node/<node_id> (other lines are ignored). Verified with the node's "
        "registered Ed25519 key; no API token. Content-Type: text/plain.",
        openapi_extra=_NOTE_BODY,
    )
    async def post_cosignature(request: Request) -> CosignatureAck:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "text/plain":
            raise UnsupportedMediaType("Content-Type must be text/plain (a signed note)")
        body = await read_limited(request, MAX_NOTE_BYTES)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the note is not UTF-8") from None
        names = set(_WITNESS.findall(text))
        if len(names) != 1:
            raise InvalidRequest("the note needs the cosignature of exactly one libra.node/")
        node_id = names.pop()
        now = clock()
        engine = request.app.state.engine

        def work() -> int:
            with write_lock, new_session(engine) as session:
                return tlog.add_cosignature(session, node_id, text, now)

        size = await run_in_threadpool(work)
        return CosignatureAck(tree_size=size, node_id=node_id)

    return router
