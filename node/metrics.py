"""Prometheus metrics of a node, served by `libra node serve` on ``telemetry.metrics_listen``.

Two kinds:

- live counters, fed by the function client (node/dispatch.py) and the outbox
  (node/federation/outbox.py) through ``observe_*`` while a ``NodeMetrics`` is active in this
  process;
- values read from the node's database at each scrape (a custom collector), so they are right
  whichever process did the work (crawl, crawl-worker, report): pages and images per finished
  cycle, matches, analysis failures, outbox depth, report lag, frontier depth.

Labels are low-cardinality by construction: country (ISO-2 or ZZ), ASN *bucket* (the ASN
rounded down to a multiple of 1000, ``unknown`` for AS0), hash family, error code, outcome.
Never a URL, host name, IP address or hash value. Each ``NodeMetrics`` has its own registry.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from node.config import NodeSettings
from node.models import AnalysisFailure, CrawlCycle, OutboxItem, Sighting

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Clock = Callable[[], datetime]


def code_label(code: str) -> str:
    """An error code as a label value: our codes are short snake_case words; anything else
    (a message, a URL) becomes ``other`` so it can never reach the label set."""
    return code if _CODE.match(code) else "other"


def country_label(country: str) -> str:
    return country if _COUNTRY.match(country) else "ZZ"


def asn_bucket(asn: int) -> str:
    """The ASN rounded down to a block of 1000: a coarse, bounded label (AS64000 covers
    AS64000-AS64999). Per-hoster detail belongs in the signed reports, not in metrics."""
    if asn <= 0:
        return "unknown"
    return f"AS{asn - asn % 1000}"


class _DatabaseCollector(Collector):
    """Reads counts from the node database at scrape time."""

    def __init__(self, engine: Engine, frontier_db: Path | None, clock: Clock) -> None:
        self._engine = engine
        self._frontier_db = frontier_db
        self._clock = clock

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with Session(self._engine) as session:
            yield from self._cycles(session)
            yield from self._matches(session)
            yield from self._failures(session)
            yield from self._outbox(session)
        yield self._frontier()

    def _cycles(self, session: Session) -> Iterator[CounterMetricFamily]:
        totals = session.exec(
            select(
                func.coalesce(func.sum(CrawlCycle.pages_fetched), 0),
                func.coalesce(func.sum(CrawlCycle.pages_failed), 0),
                func.coalesce(func.sum(CrawlCycle.images_hashed), 0),
                func.coalesce(func.sum(CrawlCycle.analysis_failures), 0),
            )
        ).one()
        pages = CounterMetricFamily(
            "libra_node_pages",
            "Pages of finished crawl cycles, by outcome.",
            labels=["outcome"],
        )
        pages.add_metric(["fetched"], float(totals[0]))
        pages.add_metric(["failed"], float(totals[1]))
        yield pages
        images = CounterMetricFamily(
            "libra_node_images",
            "Images of finished crawl cycles: hashed by the function, or failed.",
            labels=["outcome"],
        )
        images.add_metric(["hashed"], float(totals[2]))
        images.add_metric(["failed"], float(totals[3]))
        yield images
        cycles = CounterMetricFamily(
            "libra_node_crawl_cycles", "Crawl cycles by status.", labels=["status"]
        )
        for status, count in session.exec(
            select(CrawlCycle.status, func.count()).group_by(col(CrawlCycle.status))
        ):
            cycles.add_metric([code_label(status)], float(count))
        yield cycles

    def _matches(self, session: Session) -> Iterator[CounterMetricFamily]:
        counts: dict[tuple[str, str, str], int] = {}
        rows = session.exec(
            select(Sighting.country, Sighting.asn, Sighting.family, func.count()).group_by(
                col(Sighting.country), col(Sighting.asn), col(Sighting.family)
            )
        )
        for country, asn, family, count in rows:
            key = (country_label(country), asn_bucket(asn), code_label(family))
            counts[key] = counts.get(key, 0) + int(count)
        matches = CounterMetricFamily(
            "libra_node_matches",
            "Sightings (an image matching a list entry), by country, ASN bucket and hash family.",
            labels=["country", "asn_bucket", "hash_family"],
        )
        for key, count in sorted(counts.items()):
            matches.add_metric(list(key), float(count))
        yield matches

    def _failures(self, session: Session) -> Iterator[CounterMetricFamily]:
        counts: dict[str, int] = {}
        for code, count in session.exec(
            select(AnalysisFailure.code, func.count()).group_by(col(AnalysisFailure.code))
        ):
            counts[code_label(code)] = counts.get(code_label(code), 0) + int(count)
        failures = CounterMetricFamily(
            "libra_node_analysis_failures",
            "Images the function could not hash, by error code.",
            labels=["code"],
        )
        for code, count in sorted(counts.items()):
            failures.add_metric([code], float(count))
        yield failures

    def _outbox(self, session: Session) -> Iterator[GaugeMetricFamily]:
        queued = rejected = 0
        oldest: datetime | None = None
        for rejected_code, created_at in session.exec(
            select(OutboxItem.rejected_code, OutboxItem.created_at)
        ):
            if rejected_code is None:
                queued += 1
                oldest = created_at if oldest is None else min(oldest, created_at)
            else:
                rejected += 1
        depth = GaugeMetricFamily(
            "libra_node_outbox_reports",
            "Signed reports in the outbox: queued for delivery, or rejected by the coordinator.",
            labels=["state"],
        )
        depth.add_metric(["queued"], float(queued))
        depth.add_metric(["rejected"], float(rejected))
        yield depth
        lag = 0.0
        if oldest is not None:
            created = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            lag = max(0.0, (self._clock() - created).total_seconds())
        yield GaugeMetricFamily(
            "libra_node_report_lag_seconds",
            "Age of the oldest report not yet acknowledged by the coordinator (0: none queued).",
            value=lag,
        )

    def _frontier(self) -> GaugeMetricFamily:
        queued = 0
        path = self._frontier_db
        if path is not None and path.is_file():
            try:
                uri = f"file:{path.as_posix()}?mode=ro"
                with closing(sqlite3.connect(uri, uri=True, timeout=2)) as db:
                    row = db.execute(
                        "SELECT COUNT(*) FROM frontier_url u JOIN frontier_run r ON r.id = "
                        "u.run_id WHERE r.status = 'running' AND u.state = 'queued'"
                    ).fetchone()
                queued = int(row[0]) if row else 0
            except sqlite3.Error:
                queued = 0  # no frontier tables yet (no crawl ran), or a locked file
        return GaugeMetricFamily(
            "libra_node_frontier_queued",
            "URLs queued in the running crawl's SQLite frontier.",
            value=float(queued),
        )


class NodeMetrics:
    """One registry with the node's metrics. ``engine`` enables the database collector."""

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        frontier_db: Path | None = None,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = CollectorRegistry()
        self.function_calls = Counter(
            "libra_node_function_calls",
            "Analyses asked of the remote-hash function, by outcome: ok or the error code.",
            ["outcome"],
            registry=self.registry,
        )
        self.function_seconds = Histogram(
            "libra_node_function_call_seconds",
            "Time of one analysis through the function, retries included.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.deliveries = Counter(
            "libra_node_report_deliveries",
            "Outbox delivery attempts by outcome: accepted, duplicate, transient, or the "
            "coordinator's rejection code.",
            ["outcome"],
            registry=self.registry,
        )
        self.last_ack = Gauge(
            "libra_node_last_report_acknowledged_timestamp_seconds",
            "Unix time of the coordinator's last acknowledgement seen by this process.",
            registry=self.registry,
        )
        if engine is not None:
            self.registry.register(_DatabaseCollector(engine, frontier_db, clock))
        self.server: Any = None  # the HTTP server of start(), if any

    def observe_analysis(self, outcome: str, seconds: float) -> None:
        self.function_calls.labels(code_label(outcome)).inc()
        self.function_seconds.observe(seconds)

    def observe_delivery(self, outcome: str) -> None:
        self.deliveries.labels(code_label(outcome)).inc()
        if outcome in ("accepted", "duplicate"):
            self.last_ack.set(time.time())


_active: NodeMetrics | None = None


@contextmanager
def activate(metrics: NodeMetrics | None) -> Iterator[NodeMetrics | None]:
    """Feed ``metrics`` from this process's clients inside the block (restored after)."""
    global _active
    previous, _active = _active, metrics
    try:
        yield metrics
    finally:
        _active = previous


def set_active(metrics: NodeMetrics | None) -> None:
    """For `serve`, which feeds one NodeMetrics until the process ends."""
    global _active
    _active = metrics


def observe_analysis(outcome: str, seconds: float) -> None:
    if _active is not None:
        _active.observe_analysis(outcome, seconds)


def observe_delivery(outcome: str) -> None:
    if _active is not None:
        _active.observe_delivery(outcome)


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) -> (host, port); ValueError names the problem."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"metrics_listen {value!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics_listen port {port} is out of range")
    return host.strip("[]"), port


def serve(metrics: NodeMetrics, listen: str) -> tuple[Any, Any]:
    """Serve ``/metrics`` on ``listen`` from a daemon thread; returns (server, thread)."""
    host, port = parse_listen(listen)
    return start_http_server(port, addr=host, registry=metrics.registry)


def start(settings: NodeSettings, engine: Engine) -> NodeMetrics:
    """`serve`: make this process's NodeMetrics, feed it, and serve it on metrics_listen."""
    from node.crawl.limits import frontier_path

    listen = settings.telemetry.metrics_listen
    frontier = frontier_path(settings) if settings.crawl.frontier == "sqlite" else None
    metrics = NodeMetrics(engine, frontier_db=frontier)
    if listen:
        metrics.server, _thread = serve(metrics, listen)
    set_active(metrics)
    return metrics
