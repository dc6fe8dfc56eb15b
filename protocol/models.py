"""Typed message models for everything that crosses a process boundary.

All models refuse unknown fields (``extra="forbid"``): a peer that sends something we do not
understand gets a clear error instead of silent loss.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import rfc8785
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import PROTOCOL_VERSION
from .canonical import canonical_json
from .errors import BadPeriod, MalformedPayload, UnsupportedVersion
from .hashes import ReportFamily
from .strictjson import StrictJsonError, loads


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


_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _exact_timestamp(value: Any) -> Any:
    """Signed timestamps have exactly one spelling (docs/protocol.md §2): no fractions, no
    offsets, no numbers. Datetime objects (built in code, not read from the wire) pass."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _TIMESTAMP_RE.fullmatch(value):
        raise ValueError("a timestamp is a string of exactly the form YYYY-MM-DDTHH:MM:SSZ")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# The timestamps inside signed payloads (reports, key rotation): UtcDatetime read strictly.
WireTimestamp = Annotated[
    datetime,
    BeforeValidator(_exact_timestamp),
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
    # Issue 18 (docs/robust-matching.md): PDQ of the image with uniform borders trimmed, when a
    # border was found (its dihedral variants follow when requested); PDQ of overlapping
    # regions, computed for list building only (`libra hash --regions`).
    pdq_trimmed: list[str] | None = Field(default=None, max_length=8)
    pdq_trimmed_quality: int | None = Field(default=None, ge=0, le=100)
    pdq_regions: list[str] | None = Field(default=None, max_length=64)


# Issue 13 (docs/protocol.md): a video's sampled frames. 7200 = two hours at the default one
# frame per second, or four minutes of 30 fps video hashed frame by frame.
MAX_VIDEO_FRAMES = 7200


class VideoFrame(_Strict):
    """One sampled frame: vPDQ's ``frame,quality,pdq,timestamp`` (PDQ of the full frame)."""

    frame: int = Field(ge=0)  # decoded frame number, from 0
    timestamp: float = Field(ge=0)  # seconds, from the stream's time base
    pdq: str = Field(pattern=r"^[0-9a-f]{64}$")
    quality: int = Field(ge=0, le=100)


class VideoHashes(_Strict):
    """The frames of a video, sampled by timestamp every ``frame_interval`` seconds."""

    duration: float = Field(ge=0)  # seconds
    frames_decoded: int = Field(ge=0)
    frame_interval: float | None  # seconds between sampled frames; None = every frame
    frames: list[VideoFrame] = Field(max_length=MAX_VIDEO_FRAMES)


class HashResult(_Strict):
    """What the remote-hash function returns: hashes and metadata, never image bytes.

    For a video (issue 13) ``format`` is its container ("mp4", "mov", "webm", "mkv", "avi"),
    ``width``/``height`` its frame size, ``hashes`` those of its best-quality sampled frame
    (with the bytes' MD5/SHA-1/SHA-256) and ``video`` its frames; for an image ``video`` is
    absent (left out of the JSON, so an image's answer keeps its shape).
    """

    url: str
    final_url: str
    server_ip: str | None
    format: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=1)
    animated: bool = False
    hashes: ImageHashes
    # Added within version 1: absent, not null, for images (older readers forbid extras).
    video: VideoHashes | None = Field(default=None, exclude_if=lambda v: v is None)


class ErrorBody(_Strict):
    code: str
    message: str


class ErrorResponse(_Strict):
    error: ErrorBody


# Batched analysis (issue 17, docs/protocol.md §5): many URLs in one signed request. The
# protocol's ceiling; a function accepts at most its own `max_batch_items` (default 64).
MAX_BATCH_ITEMS = 1024


class AnalyzeBatchRequest(_Strict):
    """``POST /v1/analyze:batch``: each item as a single ``AnalyzeRequest``; URLs distinct."""

    items: list[AnalyzeRequest] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BatchItemError(_Strict):
    """Why one item has no result: the code and HTTP status its single request would get."""

    code: str
    message: str
    http_status: int = Field(ge=400, le=599)


class AnalyzeBatchItem(_Strict):
    """One item's answer: exactly one of ``result`` and ``error``."""

    url: str
    result: HashResult | None = None
    error: BatchItemError | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> AnalyzeBatchItem:
        if (self.result is None) == (self.error is None):
            raise ValueError("a batch item has exactly one of result and error")
        return self


class AnalyzeBatchResponse(_Strict):
    """Answers in the order of the request's items, one per item."""

    results: list[AnalyzeBatchItem]


# --------------------------------------------------------------------------- reports

UNKNOWN_COUNTRY = "ZZ"  # ISO 3166 user-assigned code, used here for "not attributable"
UNKNOWN_ASN = 0  # AS0 is reserved and never routed
UNKNOWN_HOSTER = "unknown"
MAX_COUNT = 2**53 - 1  # the largest integer JSON carries exactly
# A trimmed lg_k 15 Theta sketch in base64: ~280,000 characters compressed, 349,560 not.
MAX_THETA_CHARS = 400_000


# Period bounds (docs/protocol.md §3); a report outside them is refused with bad_period.
_BAD_PERIOD = "bad_period"
MIN_PERIOD = timedelta(seconds=60)
MAX_PERIOD = timedelta(days=31)
MAX_PERIOD_START_AFTER_CREATED = timedelta(seconds=300)  # clock skew
MAX_PERIOD_START_BEFORE_CREATED = timedelta(days=400)


class Period(_Strict):
    # Bounds against created_at: check_period (a report, not a lone period, knows created_at).
    start: WireTimestamp
    end: WireTimestamp

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end <= self.start:
            # Its own error type: a report that fails only this is bad_period, not malformed.
            raise PydanticCustomError(_BAD_PERIOD, "period end must be after its start")
        return self


def check_period(period: Period, created_at: datetime) -> None:
    """Raise BadPeriod unless start < end, the length is 60 s .. 31 days, the period has begun
    when the report was signed (start at most 300 s after created_at: a node reports its running
    day or hour, so the end may lie ahead) and starts at most 400 days before it."""
    length = period.end - period.start
    if length <= timedelta(0):
        raise BadPeriod("period end must be after its start")
    if not MIN_PERIOD <= length <= MAX_PERIOD:
        raise BadPeriod(f"a period lasts 60 s to 31 days, not {int(length.total_seconds())} s")
    if period.start > created_at + MAX_PERIOD_START_AFTER_CREATED:
        raise BadPeriod("period starts more than 300 s after the report's created_at")
    if period.start < created_at - MAX_PERIOD_START_BEFORE_CREATED:
        raise BadPeriod("period starts more than 400 days before the report's created_at")


class MatchMethods(_Strict):
    """A cell's matches counted by how they were found (issue 18, docs/robust-matching.md):
    all four required, summing to the cell's ``matches``."""

    direct: StrictInt = Field(ge=0, le=MAX_COUNT)
    dihedral: StrictInt = Field(ge=0, le=MAX_COUNT)
    trimmed: StrictInt = Field(ge=0, le=MAX_COUNT)
    region: StrictInt = Field(ge=0, le=MAX_COUNT)

    def total(self) -> int:
        return self.direct + self.dihedral + self.trimmed + self.region


class ReportCell(_Strict):
    """Counts for one (country, ASN, hoster, hash family) in one period."""

    country: str = Field(pattern=r"^[A-Z]{2}$")
    asn: StrictInt = Field(ge=0, le=4294967295)
    # Printable text only: control characters have no place in a name and break some databases.
    hoster: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    hash_family: ReportFamily
    matches: StrictInt = Field(ge=0, le=MAX_COUNT)
    distinct: StrictInt = Field(ge=0, le=MAX_COUNT)
    # Base64 Apache DataSketches HLL over HMAC(federation key, item): mergeable across nodes
    # without revealing items to the coordinator.
    sketch: str | None = Field(default=None, max_length=65536)
    # Optional (added within version 1): absent or null = the node did not say; left out of
    # the signed payload when absent, so older cells keep their bytes.
    methods: MatchMethods | None = None
    # Optional (issue 16, protocol.theta): Theta sketches (lg_k 15) of keyed final URLs (the
    # set ``distinct`` counts: exact below 32,768, else within 2 %) and of keyed matched list
    # items, whose count ``items`` is; with them the coordinator measures displacement.
    url_theta: str | None = Field(default=None, max_length=MAX_THETA_CHARS)
    items: StrictInt | None = Field(default=None, ge=0, le=MAX_COUNT)
    item_theta: str | None = Field(default=None, max_length=MAX_THETA_CHARS)

    @model_validator(mode="after")
    def _distinct_within_matches(self) -> ReportCell:
        # Each distinct URL was sighted at least once.
        if self.distinct > self.matches:
            raise ValueError("distinct must not exceed matches")
        # Each distinct item was sighted at least once.
        if self.items is not None and self.items > self.matches:
            raise ValueError("items must not exceed matches")
        if (self.items is None) != (self.item_theta is None):
            raise ValueError("items and item_theta are given together or not at all")
        # Every sighting was found one way: the breakdown is of exactly these matches.
        if self.methods is not None and self.methods.total() != self.matches:
            raise ValueError("methods must sum to matches")
        return self


class Denominators(_Strict):
    pages_fetched: StrictInt = Field(ge=0, le=MAX_COUNT)
    images_hashed: StrictInt = Field(ge=0, le=MAX_COUNT)
    hosts_seen: StrictInt = Field(ge=0, le=MAX_COUNT)


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
    asn: StrictInt = Field(ge=0, le=4294967295)
    hoster: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    notices_sent: StrictInt = Field(ge=0, le=MAX_COUNT)
    urls_noticed: StrictInt = Field(ge=0, le=MAX_COUNT)
    removed: StrictInt = Field(ge=0, le=MAX_COUNT)
    removed_within_24h: StrictInt = Field(ge=0, le=MAX_COUNT)
    removed_within_72h: StrictInt = Field(ge=0, le=MAX_COUNT)
    median_seconds: StrictInt | None = Field(default=None, ge=0, le=MAX_COUNT)
    p90_seconds: StrictInt | None = Field(default=None, ge=0, le=MAX_COUNT)
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


class HosterCoverage(_Strict):
    """Crawl effort at one hoster in one period (issue 16): the denominators of its cells.

    ``pages_fetched`` counts the HTML pages fetched from the hoster's addresses and
    ``images_hashed`` the images the function hashed there, attributed exactly as sightings
    are; so the hoster's matches over all families never exceed ``images_hashed``.
    """

    country: str = Field(pattern=r"^[A-Z]{2}$")
    asn: StrictInt = Field(ge=0, le=4294967295)
    hoster: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    pages_fetched: StrictInt = Field(ge=0, le=MAX_COUNT)
    images_hashed: StrictInt = Field(ge=0, le=MAX_COUNT)


class HosterDiscovery(_Strict):
    """New material at one hoster in one period (issue 14, docs/discovery.md): counts only,
    never a hash, a URL or a host name.

    ``candidates`` counts the images (each image once, near-duplicates included) the node first
    found in the period beside known material at this hoster and queued for review;
    ``confirmed`` and ``rejected`` count the candidate images an analyst of the agency
    confirmed or rejected in the period, placed at the hoster the candidate was found at.
    A confirmed image is matched like any listed item from then on, so it shows in the cells
    of later reports; it is counted here once, when it was confirmed.
    """

    country: str = Field(pattern=r"^[A-Z]{2}$")
    asn: StrictInt = Field(ge=0, le=4294967295)
    hoster: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    candidates: StrictInt = Field(ge=0, le=MAX_COUNT)
    confirmed: StrictInt = Field(ge=0, le=MAX_COUNT)
    rejected: StrictInt = Field(ge=0, le=MAX_COUNT)


# Members added after version 1 was first published: left out of the signed payload when
# empty, so reports without them keep exactly the bytes they always had.
_OPTIONAL_WHEN_EMPTY = ("attribution_sources", "removals", "coverage", "discovery")
# Optional cell members: absent, not null, when the node does not give them.
_OPTIONAL_CELL_MEMBERS = ("methods", "url_theta", "items", "item_theta")


class Report(_Strict):
    protocol_version: StrictInt
    report_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    node_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    sequence: StrictInt = Field(ge=1, le=MAX_COUNT)
    created_at: WireTimestamp
    period: Period
    cells: list[ReportCell] = Field(max_length=100_000)
    denominators: Denominators
    attribution_sources: list[AttributionSource] = Field(default_factory=list, max_length=20)
    removals: list[HosterRemovals] = Field(default_factory=list, max_length=100_000)
    # Optional (issue 16): per-hoster denominators; when given, complete (see _coverage).
    coverage: list[HosterCoverage] = Field(default_factory=list, max_length=100_000)
    # Optional (issue 14): candidates found and verdicts given per hoster.
    discovery: list[HosterDiscovery] = Field(default_factory=list, max_length=100_000)

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
        found: set[tuple[str, int, str]] = set()
        for found_at in self.discovery:
            where = (found_at.country, found_at.asn, found_at.hoster)
            if where in found:
                raise ValueError(f"discovery for {where} appears twice")
            found.add(where)
        self._coverage()
        return self

    def _coverage(self) -> None:
        """Coverage, when given, accounts for all the report's effort and every cell's hoster:
        it sums to the denominators, and each hoster's matches fit in its images hashed."""
        if not self.coverage:
            return
        effort: dict[tuple[str, int, str], int] = {}
        for row in self.coverage:
            where = (row.country, row.asn, row.hoster)
            if where in effort:
                raise ValueError(f"coverage for {where} appears twice")
            effort[where] = row.images_hashed
        if sum(r.pages_fetched for r in self.coverage) != self.denominators.pages_fetched:
            raise ValueError("coverage pages_fetched must sum to denominators.pages_fetched")
        if sum(r.images_hashed for r in self.coverage) != self.denominators.images_hashed:
            raise ValueError("coverage images_hashed must sum to denominators.images_hashed")
        matched: dict[tuple[str, int, str], int] = {}
        for cell in self.cells:
            where = (cell.country, cell.asn, cell.hoster)
            matched[where] = matched.get(where, 0) + cell.matches
        for where, count in matched.items():
            if where not in effort:
                raise ValueError(f"cells at {where} have no coverage row")
            if count > effort[where]:
                raise ValueError(f"matches at {where} exceed its images_hashed")

    def to_payload(self) -> bytes:
        """The canonical bytes that get signed."""
        data = self.model_dump(mode="json")
        for name in _OPTIONAL_WHEN_EMPTY:
            if not data[name]:
                del data[name]
        for cell in data["cells"]:
            for name in _OPTIONAL_CELL_MEMBERS:
                if cell[name] is None:  # optional cell member: absent, not null
                    del cell[name]
        return canonical_json(data)

    @classmethod
    def from_payload(cls, payload: bytes) -> Report:
        """Parse verified payload bytes in the order of docs/protocol.md §1: strict JSON,
        version, RFC 8785 canonical form, schema, period bounds."""
        data = parse_signed_payload(payload)
        version = data.get("protocol_version")
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise UnsupportedVersion(
                f"protocol_version {version!r} is not supported (this side speaks "
                f"{PROTOCOL_VERSION})"
            )
        check_canonical(payload, data)
        report = validate_payload(cls, data, "report")
        check_period(report.period, report.created_at)
        return report


def parse_signed_payload(payload: bytes) -> dict[str, Any]:
    """Strict JSON (protocol.strictjson) holding an object, else MalformedPayload."""
    try:
        data = loads(payload)
    except StrictJsonError as exc:
        raise MalformedPayload(f"payload: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedPayload("payload must be a JSON object")
    return data


def check_canonical(payload: bytes, data: Any) -> None:
    """The signed bytes must be their own RFC 8785 form: one spelling per document, so no
    two verifiers can read different values from them."""
    try:
        canonical = rfc8785.dumps(data)
    except rfc8785.CanonicalizationError:
        canonical = b""
    if canonical != payload:
        raise MalformedPayload("payload is not RFC 8785 canonical JSON")


_M = TypeVar("_M", bound=BaseModel)


def validate_payload(model: type[_M], data: dict[str, Any], what: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        if all(error["type"] == _BAD_PERIOD for error in errors):
            raise BadPeriod(errors[0]["msg"]) from exc
        first = next(error for error in errors if error["type"] != _BAD_PERIOD)
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedPayload(f"{what} field {where}: {first['msg']}") from exc


class KeyRotation(_Strict):
    """A node announces its next signing key: signed once with the current key (who asks) and
    once with the new key (proof of possession), both over these same canonical bytes."""

    node_id: str = Field(min_length=2, max_length=63)
    current_key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    new_public_key: str = Field(max_length=64)  # base64 of the raw 32-byte Ed25519 key
    created_at: WireTimestamp
    # The overlap the node asks for (the coordinator caps it); None: the federation's default.
    overlap_seconds: StrictInt | None = Field(default=None, ge=0, le=90 * 86_400)

    def to_payload(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


def new_report_id() -> str:
    return uuid.uuid4().hex


class ReportAck(_Strict):
    report_id: str
    status: Literal["accepted", "duplicate"]
