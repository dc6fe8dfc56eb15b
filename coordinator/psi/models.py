"""The PSI relay's tables: sessions and their step messages, opaque bytes only.

A session row holds the signed offer and the responder's signed consent (node ids, a family
name, times); a message row holds one signed step envelope, whose body is openmined-psi
ciphertext. No column ever holds a hash value. Rows go when the session expires
(coordinator/psi/relay.py purges them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, String, Text
from sqlmodel import Field

from coordinator.db import UTCDateTime
from coordinator.models import CoordinatorModel


class PsiSessionRow(CoordinatorModel, table=True):
    __tablename__ = "psi_sessions"

    session_id: str = Field(primary_key=True, max_length=32)
    initiator: str = Field(
        sa_column=Column(String(63), ForeignKey("nodes.node_id"), nullable=False, index=True)
    )
    responder: str = Field(
        sa_column=Column(String(63), ForeignKey("nodes.node_id"), nullable=False, index=True)
    )
    family: str = Field(max_length=16)
    status: str = Field(max_length=16)  # offered | accepted | declined
    offer: str = Field(sa_type=Text)  # the initiator's signed offer (DSSE envelope JSON)
    consent: str | None = Field(default=None, sa_type=Text)  # the responder's signed answer
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PsiMessageRow(CoordinatorModel, table=True):
    __tablename__ = "psi_messages"

    session_id: str = Field(
        sa_column=Column(
            String(32),
            ForeignKey("psi_sessions.session_id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    sender: str = Field(sa_column=Column(String(63), primary_key=True))
    step: str = Field(sa_column=Column(String(16), primary_key=True))
    envelope: str = Field(sa_type=Text)  # the sender's signed step message (DSSE envelope JSON)
    body_bytes: int = Field(sa_type=BigInteger)  # size of the opaque protobuf it carries
    created_at: datetime = Field(sa_type=UTCDateTime)
