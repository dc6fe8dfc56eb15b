"""Typed message models for everything that crosses a process boundary.

All models refuse unknown fields (``extra="forbid"``): a peer that sends something we do not
understand gets a clear error instead of silent loss.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from . import PROTOCOL_VERSION
from .canonical import canonical_json
from .errors import MalformedPayload, UnsupportedVersion
from .hashes import HashFamily


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (use UTC, 'Z')")
    return value.astimezone(UTC).replace(microsecond=0)


# One textual form on the wire, so that the signed bytes are reproducible everywhere.
UtcDatetime = Annotated[
    datetime,
    AfterValidator(_to_utc),
    PlainSerializer(lambda v: v.strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str),
]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- function


class AnalyzeRequest(_Strict):
    url: str = Field(min_length=1, max_length=8192)
    # Ask for the 8 dihedral PDQ variants (rotations and flips) too.
    dihedral: bool = False


class ImageHashes(_Strict):
    md5: str
    sha1: str
    sha256: str
    pdq: str
    pdq_quality: int = Field(ge=0, le=100)
    phash: str
    dhash: str
    pdq_dihedral: list[str] | None = None


class HashResult(_Strict):
    """What the remote-hash function returns: hashes and metadata, never image bytes."""

    url: str
    final_url: str
    server_ip: str | None
    format: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=1)
    animated: bool = False
    hashes: ImageHashes


class ErrorBody(_Strict):
    code: str
    message: str


class ErrorResponse(_Strict):
    error: ErrorBody


# --------------------------------------------------------------------------- reports

UNKNOWN_COUNTRY = "ZZ"  # ISO 3166 user-assigned code, used here for "not attributable"
UNKNOWN_ASN = 0  # AS0 is reserved and never routed
UNKNOWN_HOSTER = "unknown"
MAX_COUNT = 2**53 - 1  # the largest integer JSON carries exactly


class Period(_Strict):
    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end <= self.start:
            raise ValueError("period end must be after its start")
        return self


class ReportCell(_Strict):
    """Counts for one (country, ASN, hoster, hash family) in one period."""

    country: str = Field(pattern=r"^[A-Z]{2}$")
    asn: int = Field(ge=0, le=4294967295)
    # Printable text only: control characters have no place in a name and break some databases.
    hoster: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    hash_family: HashFamily
    matches: int = Field(ge=0, le=MAX_COUNT)
    distinct: int = Field(ge=0, le=MAX_COUNT)
    # Base64 Apache DataSketches HLL over HMAC(federation key, item): mergeable across nodes
    # without revealing items to the coordinator.
    sketch: str | None = Field(default=None, max_length=65536)


class Denominators(_Strict):
    pages_fetched: int = Field(ge=0, le=MAX_COUNT)
    images_hashed: int = Field(ge=0, le=MAX_COUNT)
    hosts_seen: int = Field(ge=0, le=MAX_COUNT)


class AttributionSource(_Strict):
    """A database snapshot the node's attribution rests on (GeoIP country, ASN, operator table),
    so every figure can be traced to the data that placed it."""

    # e.g. "GeoLite2-Country", "DBIP-ASN-Lite", "operator-table"
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    # e.g. the MaxMind build epoch as ISO date-time, or the operator table's content digest
    version: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")


class HosterRemovals(_Strict):
    """Notices to one hoster and what came of them, in one period.

    ``notices_sent`` counts every notice delivered in the period (re-notices included);
    ``urls_noticed`` the URLs first noticed in the period; ``removed`` the noticed URLs whose
    removal the node confirmed in the period, with time to removal measured from the first
    notice. The median and p90 are the node's own exact figures; the coordinator merges the
    KLL sketches to give the same figures across nodes and periods.
    """

    country: str = Field(pattern=r"^[A-Z]{2}$")
    asn: int = Field(ge=0, le=4294967295)
    hoster: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    notices_sent: int = Field(ge=0, le=MAX_COUNT)
    urls_noticed: int = Field(ge=0, le=MAX_COUNT)
    removed: int = Field(ge=0, le=MAX_COUNT)
    removed_within_24h: int = Field(ge=0, le=MAX_COUNT)
    removed_within_72h: int = Field(ge=0, le=MAX_COUNT)
    median_seconds: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    p90_seconds: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    # Base64 Apache DataSketches KLL float sketch (k = 200) of the times to removal in seconds.
    removal_sketch: str | None = Field(default=None, max_length=65536)

    @model_validator(mode="after")
    def _consistent(self) -> HosterRemovals:
        if not self.removed_within_24h <= self.removed_within_72h <= self.removed:
            raise ValueError("need removed_within_24h <= removed_within_72h <= removed")
        if (self.median_seconds is None) != (self.removed == 0):
            raise ValueError("median_seconds is given exactly when something was removed")
        if (self.p90_seconds is None) != (self.removed == 0):
            raise ValueError("p90_seconds is given exactly when something was removed")
        return self


# Members added after version 1 was first published: left out of the signed payload when
# empty, so reports without them keep exactly the bytes they always had.
_OPTIONAL_WHEN_EMPTY = ("attribution_sources", "removals")


class Report(_Strict):
    protocol_version: int
    report_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    node_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    sequence: int = Field(ge=1, le=MAX_COUNT)
    created_at: UtcDatetime
    period: Period
    cells: list[ReportCell] = Field(max_length=100_000)
    denominators: Denominators
    attribution_sources: list[AttributionSource] = Field(default_factory=list, max_length=20)
    removals: list[HosterRemovals] = Field(default_factory=list, max_length=100_000)

    @model_validator(mode="after")
    def _unique_cells(self) -> Report:
        seen: set[tuple[str, int, str, str]] = set()
        for cell in self.cells:
            key = (cell.country, cell.asn, cell.hoster, cell.hash_family.value)
            if key in seen:
                raise ValueError(f"cell {key} appears twice")
            seen.add(key)
        hosters: set[tuple[str, int, str]] = set()
        for row in self.removals:
            where = (row.country, row.asn, row.hoster)
            if where in hosters:
                raise ValueError(f"removals for {where} appear twice")
            hosters.add(where)
        return self

    def to_payload(self) -> bytes:
        """The canonical bytes that get signed."""
        data = self.model_dump(mode="json")
        for name in _OPTIONAL_WHEN_EMPTY:
            if not data[name]:
                del data[name]
        return canonical_json(data)

    @classmethod
    def from_payload(cls, payload: bytes) -> Report:
        """Parse verified payload bytes; version is checked before the schema."""
        try:
            data: Any = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedPayload(f"payload is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MalformedPayload("payload must be a JSON object")
        version = data.get("protocol_version")
        if version != PROTOCOL_VERSION:
            raise UnsupportedVersion(
                f"protocol_version {version!r} is not supported (this side speaks "
                f"{PROTOCOL_VERSION})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise MalformedPayload(f"report field {where}: {first['msg']}") from exc


class KeyRotation(_Strict):
    """A node announces its next signing key: signed once with the current key (who asks) and
    once with the new key (proof of possession), both over these same canonical bytes."""

    node_id: str = Field(min_length=2, max_length=63)
    current_key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    new_public_key: str = Field(max_length=64)  # base64 of the raw 32-byte Ed25519 key
    created_at: UtcDatetime
    # The overlap the node asks for (the coordinator caps it); None: the federation's default.
    overlap_seconds: int | None = Field(default=None, ge=0, le=90 * 86_400)

    def to_payload(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


def new_report_id() -> str:
    return uuid.uuid4().hex


class ReportAck(_Strict):
    report_id: str
    status: Literal["accepted", "duplicate"]
