"""Node settings: a TOML file, overridden by ``LIBRA_NODE_*`` environment variables.

Nested tables use ``__`` in variable names (``LIBRA_NODE_MATCH__PDQ_MAX_DISTANCE=20``).
Relative paths in the file are resolved against the file's own directory, so a node directory
made by ``libra node init`` can be moved as a whole. Every setting is documented in
docs/operations-node.md; keep the two in step.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from node.defaults import CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE
from protocol.lab import LabNetwork, load_lab

__all__ = ["CONFIG_ENV_VAR", "DEFAULT_CONFIG_FILE"]  # re-exported

ENV_PREFIX = "LIBRA_NODE_"
SQLITE_FILE_NAME = "node.sqlite3"
SIGNING_KEY_FILE_NAME = "node.key"
FEDERATION_KEY_FILE_NAME = "federation.key"
LIST_KEY_FILE_NAME = "lists.key"
INDEX_DIR_NAME = "index"
RDAP_BOOTSTRAP_FILE_NAME = "rdap-bootstrap.json"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or holds invalid values."""


class _Section(BaseModel):
    # A typo in a section must fail loudly, like one at the top level.
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeoipSettings(_Section):
    country_db: Path | None = Field(
        default=None,
        description="MaxMind-format country database (GeoLite2-Country schema); unset = ZZ.",
    )
    asn_db: Path | None = Field(
        default=None,
        description="MaxMind-format ASN database (GeoLite2-ASN schema); unset = AS0/unknown.",
    )


class RecrawlSettings(_Section):
    """A known hotspot: crawled again every ``every_minutes`` by `libra node serve`."""

    url: str = Field(pattern=r"^https?://", description="Start URL of the re-crawl.")
    every_minutes: float = Field(gt=0, description="Interval between re-crawls.")


class CrawlSettings(_Section):
    """Mirrors node.crawl.crawler.CrawlLimits field by field."""

    max_pages: int = Field(default=2000, ge=1, description="Pages fetched per cycle at most.")
    max_depth: int = Field(default=6, ge=0, description="Link depth from a seed.")
    concurrency: int = Field(default=8, ge=1, description="Pages fetched at once overall.")
    per_host_concurrency: int = Field(default=1, ge=1, description="Pages at once per host.")
    timeout_s: float = Field(default=15.0, gt=0, description="Per-request timeout (seconds).")
    max_html_bytes: int = Field(default=5_000_000, ge=1024, description="HTML body cap.")
    max_redirects: int = Field(default=5, ge=0, description="Redirects followed per page.")
    user_agent: str = Field(
        default="LIBRA-node/0.1 (+https://libra.invalid/bot)",
        min_length=1,
        description="User-Agent of the crawler (also matched against robots.txt).",
    )
    obey_robots: bool = Field(default=True, description="Honour robots.txt.")
    # ---- issue 5: politeness, scope, frontier (docs/operations-crawler.md)
    robots_override_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts whose robots.txt this node ignores by policy (each use is audited).",
    )
    max_pages_per_site: int = Field(default=0, ge=0, description="Pages per seed site; 0 = off.")
    min_delay_s: float = Field(default=0.0, ge=0, description="Min gap between requests to a host.")
    max_crawl_delay_s: float = Field(default=30.0, ge=0, description="Cap on robots Crawl-delay.")
    backoff_base_s: float = Field(default=1.0, ge=0, description="First back-off after 429/503.")
    max_backoff_s: float = Field(default=120.0, ge=0, description="Back-off / Retry-After cap.")
    slow_response_s: float = Field(default=5.0, gt=0, description="Slower answers back off.")
    retries: int = Field(default=2, ge=0, description="Retries of 429/503/timeouts per URL.")
    scope: Literal["host", "domain"] = Field(
        default="host", description="Site of a seed: its host name or its registered domain."
    )
    external_hops: int = Field(default=0, ge=0, description="Off-site hops followed.")
    include: list[str] = Field(default_factory=list, description="Page URL regexes to keep.")
    exclude: list[str] = Field(default_factory=list, description="Page URL regexes to skip.")
    sitemaps: bool = Field(default=True, description="Use robots.txt Sitemap: lines.")
    videos: bool = Field(
        default=True, description="Send video URLs found on pages to the function (issue 13)."
    )
    frontier: Literal["sqlite", "memory", "redis"] = Field(
        default="sqlite", description="Where the frontier lives (sqlite: resumable)."
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis frontier.")
    redis_prefix: str = Field(default="libra:frontier", description="Redis key prefix.")
    lease_s: float = Field(default=30.0, gt=0, description="Redis host lease before takeover.")
    recrawl: list[RecrawlSettings] = Field(
        default_factory=list, description="Hotspots re-crawled on their own interval (`serve`)."
    )


class MatchSettings(_Section):
    pdq_max_distance: int = Field(default=31, ge=0, le=256, description="PDQ Hamming cut-off.")
    pdq_min_quality: int = Field(
        default=50, ge=0, le=100, description="PDQ hashes below this quality never match."
    )
    phash_max_distance: int = Field(default=8, ge=0, le=64, description="pHash cut-off.")
    dhash_max_distance: int = Field(default=8, ge=0, le=64, description="dHash cut-off.")
    dihedral: bool = Field(
        # On by default (issue 18): the function derives the 8 variants from one DCT, the
        # node's extra lookups are the whole cost (docs/robust-matching.md).
        default=True,
        description="Ask the function for the 8 dihedral PDQ variants and match any of them.",
    )
    # issue 13: Meta's vPDQ comparison (node/matching/vpdq.py), its four parameters
    vpdq_max_distance: int = Field(
        default=31, ge=0, le=256, description="vPDQ: frame PDQ distance that counts as a match."
    )
    vpdq_min_quality: int = Field(
        default=50, ge=0, le=100, description="vPDQ: frames below this PDQ quality are ignored."
    )
    vpdq_query_match_percent: float = Field(
        default=80.0, ge=0, le=100, description="vPDQ: share of the found video's frames matched."
    )
    vpdq_compared_match_percent: float = Field(
        default=80.0, ge=0, le=100, description="vPDQ: share of the listed video's frames matched."
    )


class DispatchSettings(_Section):
    concurrency: int = Field(default=8, ge=1, description="Function calls in flight at once.")
    batch_size: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Most image URLs per function request (POST /v1/analyze:batch); 1: one "
        "request per image. Batches form only from images already waiting.",
    )
    retries: int = Field(default=3, ge=0, description="Retries of a transient function error.")
    timeout_s: float = Field(default=60.0, gt=0, description="Per-call timeout (seconds).")


class ReportSettings(_Section):
    # node.federation.reporter.PERIOD_LENGTHS: 5 and 15 minutes give a near-real-time picture
    # (issue 16).
    period: Literal["5m", "15m", "hour", "day"] = Field(
        default="day",
        description="Length of the default report period (UTC-aligned): 5m, 15m, hour or day.",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Coordinator request timeout.")


class ScheduleSettings(_Section):
    crawl_minutes: float = Field(default=360.0, gt=0, description="`serve`: crawl interval.")
    report_minutes: float = Field(default=60.0, gt=0, description="`serve`: report interval.")


class TelemetrySettings(_Section):
    """Issue 8: traces and Prometheus metrics (node/telemetry.py, node/metrics.py)."""

    tracing: Literal["off", "console", "otlp"] = Field(
        default="off", description="Trace export: off, console (stderr) or otlp (OTLP/HTTP)."
    )
    otlp_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces", description="OTLP/HTTP traces endpoint."
    )
    metrics_listen: str | None = Field(
        default=None,
        pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$",
        description="`serve`: host:port of the Prometheus /metrics server; unset = off.",
    )


# ---- issue 7 (notices): policy, delivery and approval API for notices to hosters
# (docs/notices.md). Helper "contacts" adds its own block for attribution/contacts/retention.
XarfClassification = Literal["baseline", "A1", "A2", "B1", "B2"]


class SmtpSettings(_Section):
    host: str | None = Field(default=None, description="SMTP relay; unset = no e-mail notices.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS, implicit TLS, or none (lab relays only)."
    )
    username: str | None = Field(default=None, description="SMTP login; unset = no AUTH.")
    password_file: Path | None = Field(default=None, description="File holding the password.")
    from_address: str = Field(
        default="libra-node@localhost", description="Envelope and From: address of notices."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="SMTP timeout (seconds).")


class NoticeApiSettings(_Section):
    host: str = Field(default="127.0.0.1", description="`notices api`: bind address.")
    port: int = Field(default=8710, ge=1, le=65535, description="`notices api`: port.")


class NoticeSettings(_Section):
    enabled: bool = Field(
        default=False, description="Build, send and re-check notices (`serve` schedules them)."
    )
    families: list[str] = Field(
        default_factory=list, description="Hash families that trigger a notice; empty = all."
    )
    categories: list[str] = Field(
        default_factory=list, description="List categories that trigger a notice; empty = all."
    )
    require_approval: bool = Field(
        default=True, description="An analyst approves each notice before it is sent."
    )
    include_hashes: bool = Field(
        default=False, description="Put the matched list entry's hash value into the notice."
    )
    renotice_hours: float = Field(
        default=24.0, gt=0, description="Re-notice a URL still there after this long."
    )
    escalate_after: int = Field(
        default=3, ge=1, description="Escalate when still there after this many notices."
    )
    escalation_email: str | None = Field(
        default=None, description="Also told when a notice is escalated; unset = flag only."
    )
    recheck_minutes: float = Field(default=60.0, gt=0, description="`serve`: notices interval.")
    unreachable_is_removed: bool = Field(
        default=True, description="A host that no longer answers counts as removal."
    )
    default_classification: XarfClassification = Field(
        default="baseline",
        description="XARF classification when the entry's category is not one itself.",
    )
    reporter_org: str = Field(default="", max_length=200, description="XARF reporter.org.")
    reporter_contact: str = Field(default="", description="XARF reporter.contact (e-mail).")
    reporter_domain: str = Field(default="", description="XARF reporter.domain.")
    webhook_secret_file: Path | None = Field(
        default=None, description="HMAC key for webhook bodies; unset = webhooks not sent."
    )
    webhook_timeout_s: float = Field(default=15.0, gt=0, description="Webhook timeout.")
    webhook_retries: int = Field(default=2, ge=0, description="Immediate webhook retries.")
    retry_minutes: float = Field(default=15.0, gt=0, description="First delivery retry delay.")
    max_attempts: int = Field(
        default=8, ge=1, description="Delivery attempts before it is marked failed (kept)."
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    api: NoticeApiSettings = Field(default_factory=NoticeApiSettings)


# ---- issue 7 part C: attribution, abuse contacts, retention (docs/attribution.md)
class AttributionSettings(_Section):
    operators_file: Path | None = Field(
        default=None,
        description="Operator table (TOML): hosters by ASN/CIDR/domain, names, abuse contacts.",
    )


class ContactsSettings(_Section):
    rdap: bool = Field(default=True, description="Ask RDAP when the operator table has none.")
    bootstrap_file: Path | None = Field(
        default=None,
        description="Cached RDAP bootstrap (whoisit JSON); unset = <data_dir>/rdap-bootstrap.json.",
    )
    cache_days: float = Field(default=7.0, gt=0, description="RDAP answers cached this long.")
    negative_cache_hours: float = Field(
        default=6.0, gt=0, description="RDAP failures / no-contact answers cached this long."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="RDAP request timeout (seconds).")


class RetentionSettings(_Section):
    """Days each kind of record is kept (0 = forever); see node/retention.py."""

    sightings_days: float = Field(default=365.0, ge=0, description="Sightings.")
    unmatched_days: float = Field(
        default=30.0, ge=0, description="Analysed image URLs without a match."
    )
    failures_days: float = Field(default=30.0, ge=0, description="Analysis failures.")
    notices_days: float = Field(default=730.0, ge=0, description="Notices and deliveries.")
    rdap_cache_days: float = Field(default=30.0, ge=0, description="Expired RDAP cache rows.")
    candidates_days: float = Field(
        default=180.0, ge=0, description="Decided candidates (issue 14), after their verdict."
    )
    pending_candidates_days: float = Field(
        default=365.0, ge=0, description="Candidates never decided, after they were last seen."
    )
    run_minutes: float = Field(default=1440.0, gt=0, description="`serve`: retention interval.")


# ---- end issue 7 part C


class DiscoverySettings(_Section):
    """New material beside known material (issue 14, node/discovery; docs/discovery.md)."""

    enabled: bool = Field(
        default=True, description="Keep unmatched images beside matched ones as candidates."
    )
    min_score: float = Field(
        default=40.0, ge=0, le=100, description="Candidates scoring below this are not kept."
    )
    max_per_cycle: int = Field(default=5000, ge=0, description="New candidates kept per cycle.")
    cluster_max_distance: int = Field(
        default=16, ge=0, le=256, description="PDQ distance within which candidates are one."
    )
    min_pixels: int = Field(
        default=4096,
        ge=0,
        description="Images smaller than this (w x h) lose points: 40 where their directory "
        "holds known items, else 75 (icons, decorations).",
    )
    max_kept: int = Field(
        default=200_000,
        ge=1,
        description="Unmatched images a cycle keeps in memory for scoring (~0.4 KB each).",
    )
    flood_factor: float = Field(
        default=10.0, gt=1, description="Flood guard: matches over this x an entry's history."
    )
    flood_min_matches: int = Field(
        default=50, ge=1, description="Flood guard: never hold an entry below this many matches."
    )
    flood_history_cycles: int = Field(
        default=10, ge=1, description="Flood guard: past cycles an entry's history is taken from."
    )
    flag_after_rejections: int = Field(
        default=3, ge=1, description="Flag a list entry that matched this many rejected images."
    )


class NodeSettings(BaseSettings):
    """All node settings. Sources, strongest first: init arguments, environment, TOML."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    node_id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{1,62}$",
        description="This node's id, exactly as registered at the coordinator.",
    )
    country: str = Field(
        pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country of the agency."
    )
    data_dir: Path = Field(default=Path("."), description="Directory for the node's own files.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset = SQLite at <data_dir>/node.sqlite3."
    )
    signing_key_file: Path | None = Field(
        default=None, description="Ed25519 seed (base64); unset = <data_dir>/node.key."
    )
    federation_key_file: Path | None = Field(
        default=None,
        description="32-byte federation HMAC key (base64); unset = <data_dir>/federation.key.",
    )
    list_key_file: Path | None = Field(
        default=None,
        description="32-byte AES key for the lists at rest (base64); unset = <data_dir>/lists.key."
        " $LIBRA_NODE_LIST_KEY (base64) overrides the file.",
    )
    function_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL of the remote-hash function."
    )
    function_key_file: Path | None = Field(
        default=None,
        description="Ed25519 seed (base64) signing requests to the function as node_id; "
        "unset = unsigned requests (only a lab or require_auth=false function accepts them).",
    )
    coordinator_url: str = Field(
        default="http://127.0.0.1:8700", description="Base URL of the coordinator."
    )
    seeds: list[str] = Field(default_factory=list, description="Start URLs of a crawl cycle.")
    lab: Path | None = Field(
        default=None, description="protocol.lab LabNetwork TOML: loopback lab mode (tests/demo)."
    )
    geoip: GeoipSettings = Field(default_factory=GeoipSettings)
    crawl: CrawlSettings = Field(default_factory=CrawlSettings)
    match: MatchSettings = Field(default_factory=MatchSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    notices: NoticeSettings = Field(default_factory=NoticeSettings)  # issue 7
    # issue 7 part C: attribution, abuse contacts, retention
    attribution: AttributionSettings = Field(default_factory=AttributionSettings)
    contacts: ContactsSettings = Field(default_factory=ContactsSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)  # issue 14
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)  # issue 8

    @field_validator("function_url", "coordinator_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("seeds")
    @classmethod
    def _http_seeds(cls, seeds: list[str]) -> list[str]:
        for seed in seeds:
            if not seed.startswith(("http://", "https://")):
                raise ValueError(f"seed {seed!r} is not an http(s) URL")
        return seeds

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # One file plus the environment: no .env or secrets dir to keep deployments legible.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    # Derived paths: the defaults live under data_dir.

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / SQLITE_FILE_NAME).as_posix()}"

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_file or self.data_dir / SIGNING_KEY_FILE_NAME

    @property
    def federation_key_path(self) -> Path:
        return self.federation_key_file or self.data_dir / FEDERATION_KEY_FILE_NAME

    @property
    def list_key_path(self) -> Path:
        return self.list_key_file or self.data_dir / LIST_KEY_FILE_NAME

    @property
    def rdap_bootstrap_path(self) -> Path:
        """The cached RDAP bootstrap data (issue 7)."""
        return self.contacts.bootstrap_file or self.data_dir / RDAP_BOOTSTRAP_FILE_NAME

    @property
    def index_dir(self) -> Path:
        """Where the persisted (encrypted) match indexes live."""
        return self.data_dir / INDEX_DIR_NAME


def resolve_config_path(explicit: Path | None) -> Path:
    """The config file to read: explicit path, else $LIBRA_NODE_CONFIG, else ./node.toml.

    A node has required settings (node id, country), so a config file must exist.
    """
    if explicit is None:
        from_env = os.environ.get(CONFIG_ENV_VAR)
        explicit = Path(from_env) if from_env else DEFAULT_CONFIG_FILE
    if not explicit.is_file():
        raise ConfigError(
            f"config file {explicit} does not exist (run `libra node init` or pass --config)"
        )
    return explicit


def _under(base: Path, path: Path | None) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _anchor_paths(settings: NodeSettings, base: Path) -> NodeSettings:
    """Resolve relative paths against the config file's directory."""
    data_dir = _under(base, settings.data_dir)
    assert data_dir is not None
    return settings.model_copy(
        update={
            "data_dir": data_dir,
            "signing_key_file": _under(base, settings.signing_key_file),
            "federation_key_file": _under(base, settings.federation_key_file),
            "function_key_file": _under(base, settings.function_key_file),
            "list_key_file": _under(base, settings.list_key_file),
            "lab": _under(base, settings.lab),
            "attribution": settings.attribution.model_copy(
                update={"operators_file": _under(base, settings.attribution.operators_file)}
            ),
            "contacts": settings.contacts.model_copy(
                update={"bootstrap_file": _under(base, settings.contacts.bootstrap_file)}
            ),
            "notices": settings.notices.model_copy(  # issue 7: notice secrets
                update={
                    "webhook_secret_file": _under(base, settings.notices.webhook_secret_file),
                    "smtp": settings.notices.smtp.model_copy(
                        update={"password_file": _under(base, settings.notices.smtp.password_file)}
                    ),
                }
            ),
            "geoip": settings.geoip.model_copy(
                update={
                    "country_db": _under(base, settings.geoip.country_db),
                    "asn_db": _under(base, settings.geoip.asn_db),
                }
            ),
        }
    )


def lab_of(settings: NodeSettings) -> LabNetwork | None:
    """The lab network of a lab-mode node (None otherwise); ConfigError when the lab file
    is missing or invalid (a clear message, not a traceback)."""
    if settings.lab is None:
        return None
    try:
        return load_lab(settings.lab)
    except OSError as exc:
        raise ConfigError(f"cannot read the lab file {settings.lab}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"lab file {settings.lab} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid lab file {settings.lab}: {_problems(exc)}") from exc


def load_settings(config_path: Path | None = None) -> NodeSettings:
    """Load settings from the resolved TOML file with environment overrides."""
    path = resolve_config_path(config_path)

    class _FromFile(NodeSettings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        settings: NodeSettings = _FromFile()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid node settings ({path}): {_problems(exc)}") from exc
    return _anchor_paths(settings, path.resolve().parent)


def _problems(exc: ValidationError) -> str:
    """``crawl.max_pages: Input should be ...; seeds.0: ...``: where and why, one line."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )
