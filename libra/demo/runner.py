"""The demo: a whole federation on loopback over several report periods, checked against the
synthetic world's ground truth.

Every component runs as its own `libra` process talking HTTP; this module only sets up the
world, starts them, issues the same commands an operator would, and compares what the
coordinator shows with the truth computed from the world model and the scripted notice
behaviour alone (never from hashes): each period's picture, the trends, time to removal per
hoster, the displacement flows and (issue 13) each period's video cells (the picture with
``media=video``, the stills found as frames, the split of the matches by media). Issue 14: a
fourth node, not registered and never reporting, finds new material on the discovery world; its
queue and the effect of an analyst's verdicts are checked against that world's truth
(libra/demo/discovery_demo.py).

Simulated time (issue 16): the periods are the whole UTC days before today; every node command
runs with the lab clock `--at` (node/clock.py), which adds the real seconds the command takes.
Per day: the web moves to that day's epoch, every node crawls (`--at` 01:00), each node's
notices run (`--at` 06:00, 15 minutes later each day, so that the last round is always more
than 24 h old and a re-notice is due), and each node reports the day.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from rich.console import Console

from libra.demo.budget import DemoBudget
from libra.demo.checks import (
    CoverageCheck,
    FlowCheck,
    RemovalCheck,
    TrendCheck,
    VideoCheck,
    check_coverage,
    check_flows,
    check_removals,
    check_shifts,
    check_videos,
)
from libra.demo.compare import Comparison, compare_picture, expected_from_truth
from libra.demo.defaults import DEFAULT_SCALE, DEFAULT_SEED
from libra.demo.deliveries import missing_deliveries
from libra.demo.discovery_demo import (
    DiscoveryNode,
    DiscoveryResult,
    discovery_world,
    run_discovery,
)
from libra.demo.discovery_world import DiscoveryWorld
from libra.demo.history import History, day_periods
from libra.demo.labgeo import write_lab_geoip
from libra.demo.listen import DEFAULT_HOST, http_url
from libra.demo.lists import node_list_families, write_node_lists
from libra.demo.live import LiveWorld, write_webhook_key
from libra.demo.noticesim import NoticeSimulation
from libra.demo.policy import REMOVES_AFTER, policy_text
from libra.demo.processes import DemoStepFailed, ProcessGroup, free_port
from libra.demo.steps import Steps
from libra.demo.web import SyntheticWeb, WebError
from libra.demo.world import DEMO_VIDEOS, World
from protocol.keys import NodeKey

CRAWL_AT = timedelta(hours=1)
NOTICES_AT = timedelta(hours=6)
# Each day's notices run this much later than the day before: a round sent at X + a few
# seconds is then surely 24 h old at the next run (notices.renotice_hours = 24).
NOTICES_DRIFT = timedelta(minutes=15)


@dataclass(frozen=True)
class DemoOptions:
    seed: int = DEFAULT_SEED
    scale: float = DEFAULT_SCALE
    workdir: Path | None = None
    keep_workdir: bool = False
    today: datetime | None = None  # default: now; the periods are the days before it
    # Where the coordinator listens (loopback only: libra/demo/listen.py); port None: any free.
    host: str = DEFAULT_HOST
    port: int | None = None
    # Issue 13: listed videos, their copies and stills among the images (World.build(videos=)).
    videos: bool = DEMO_VIDEOS
    # Issue 14: the new-material step (a fourth node on the discovery world).
    discovery: bool = True


@dataclass
class PeriodResult:
    index: int
    start: datetime
    end: datetime
    comparison: Comparison
    picture: dict[str, Any]
    expected: dict[str, Any]


@dataclass
class DemoResult:
    periods: list[PeriodResult]
    removals: list[RemovalCheck]
    flows: list[FlowCheck]
    trends: TrendCheck
    coverage: CoverageCheck
    coordinator_url: str
    workdir: Path
    seconds: float
    tolerance_s: int  # how far a measured time to removal may be from the scripted one
    history: History
    notices_received: dict[str, int] = field(default_factory=dict)  # per hoster key
    # Issue 13: per period, the video cells (GET /v1/picture?media=video), the stills found
    # as frames and the split by media, against the truth (periods' order).
    videos: list[VideoCheck] = field(default_factory=list)
    # Issue 14: the new-material step (None in a result built without it).
    discovery: DiscoveryResult | None = None

    @property
    def comparison(self) -> Comparison:
        """Every period's differences, in one comparison (the sections of the last one)."""
        merged = Comparison(sections=self.periods[-1].comparison.sections if self.periods else {})
        for period in self.periods:
            merged.differences += [
                f"{period.start:%Y-%m-%d}: {d}" for d in period.comparison.differences
            ]
        return merged

    @property
    def differences(self) -> list[str]:
        out = list(self.comparison.differences)
        for check in self.removals:
            if not check.agrees:
                out.append(
                    f"removals {check.hoster}: coordinator {check.actual} median "
                    f"{check.actual_median} p90 {check.actual_p90}; truth {check.expected} "
                    f"median in {check.median} p90 in {check.p90}"
                )
        for flow in self.flows:
            out += flow.differences
        out += self.trends.differences
        out += self.coverage.differences
        if self.videos:  # one check per period (a result built without them has none)
            for period, videos in zip(self.periods, self.videos, strict=True):
                out += [f"{period.start:%Y-%m-%d}: {d}" for d in videos.differences]
        if self.discovery is not None:
            out += self.discovery.differences
        return out

    @property
    def agrees(self) -> bool:
        return not self.differences


def demo_history(options: DemoOptions) -> History:
    """The history the demo runs: over a world with videos when ``options.videos`` (the
    world's own default stays image-only, which its tests and fingerprints rely on)."""
    return History.build(seed=options.seed, scale=options.scale, videos=options.videos)


def notice_moment(day_start: datetime, index: int) -> datetime:
    return day_start + NOTICES_AT + index * NOTICES_DRIFT


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def _workdir(options: DemoOptions) -> Iterator[Path]:
    if options.workdir is not None:
        try:
            options.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, no permission: say so, no traceback
            raise DemoStepFailed(
                f"cannot use --workdir {options.workdir}: {exc.strerror or exc}"
            ) from exc
        yield options.workdir
        return
    path = Path(tempfile.mkdtemp(prefix="libra-demo-"))
    keep = options.keep_workdir
    try:
        yield path
    except Exception:
        keep = True  # a failed step's message points at the logs in here
        raise
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


class Federation:
    """The running demo federation: web, function, coordinator and node directories."""

    def __init__(
        self,
        history: History,
        workdir: Path,
        console: Console,
        discovery: DiscoveryWorld | None = None,
    ) -> None:
        self.history = history
        self.world: World = history.world
        # Issue 14: the discovery world and its own web, crawled by a fourth node that is not
        # registered at the coordinator (libra/demo/discovery_demo.py).
        self.discovery = discovery
        self.discovery_web = None if discovery is None else SyntheticWeb(discovery.world)
        self.discovery_config: Path | None = None
        self.workdir = workdir
        self.console = console
        # Every step is bounded by a budget derived from the world's size (hangs fail clearly).
        self.budget = DemoBudget.for_world(self.world, periods=history.periods)
        self.procs = ProcessGroup(
            workdir / "logs",
            service_timeout=self.budget.service_s,
            command_timeout=self.budget.command_s,
        )
        # The key the nodes sign webhook bodies with; the hosters' desks check it.
        self.webhook_key = workdir / "webhook.key"
        self.live = LiveWorld(history, write_webhook_key(self.webhook_key))
        self.web = SyntheticWeb(self.world, live=self.live)
        self.function_url = ""
        self.coordinator_url = ""
        self.coordinator_config = workdir / "coordinator" / "coordinator.toml"
        self.node_configs: dict[str, Path] = {}
        self.function_keys: dict[str, Path] = {}
        self.viewer_token = ""
        self.notice_seconds: list[float] = []  # real duration of every notices run
        # The truth's notices, day by day, as the runner goes (checked after every run).
        self.sim = NoticeSimulation(history)

    def start_world(self) -> Path:
        try:
            self.web.start()
            if self.discovery_web is not None:
                self.discovery_web.start()
        except WebError as exc:
            raise DemoStepFailed(f"the synthetic web did not start: {exc}") from exc
        lab = self.web.lab_network().model_dump(mode="json")
        if self.discovery_web is not None:
            # One lab for both webs (their site names never collide: discovery_world.py), so
            # one function serves them both.
            other = self.discovery_web.lab_network().model_dump(mode="json")
            shared = sorted(set(lab["hosts"]) & set(other["hosts"]))
            if shared:  # one name, two sites: the lab DNS could not tell them apart
                raise DemoStepFailed(f"the discovery world reuses site names: {shared[:3]}")
            lab["hosts"] = {**lab["hosts"], **other["hosts"]}
            for key in ("allow_ranges", "allow_ports"):
                lab[key] = [*lab[key], *(v for v in other[key] if v not in lab[key])]
        lab_file = self.workdir / "lab.toml"
        lab_file.write_text(tomli_w.dumps(lab), encoding="utf-8")
        return lab_file

    def write_operator_table(self) -> Path:
        """The nodes' operator table: each hoster with an abuse desk, by ASN, with its webhook
        (names as the lab ASN database spells them, so attribution does not change)."""
        entries = []
        for key in sorted(REMOVES_AFTER):
            hoster = self.world.hoster(key)
            entries.append(
                {
                    "id": key,
                    "name": hoster.name,
                    "asns": [hoster.asn],
                    "webhook": self.live.webhook_url(key, self.web.port),
                }
            )
        path = self.workdir / "operators.toml"
        path.write_text(tomli_w.dumps({"hoster": entries}), encoding="utf-8")
        return path

    def make_function_keys(self) -> dict[str, str]:
        """One request-signing key per node; the function accepts exactly these callers."""
        authorized: dict[str, str] = {}
        node_ids = [plan.node_id for plan in self.world.nodes]
        if self.discovery is not None:
            node_ids.append(self.discovery.node_id)
        for node_id in node_ids:
            key = NodeKey.generate()
            path = self.workdir / "function-keys" / f"{node_id}.key"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(key.seed_b64() + "\n", encoding="utf-8")
            path.chmod(0o600)
            self.function_keys[node_id] = path
            authorized[node_id] = key.public_key_b64
        return authorized

    def start_function(self, lab_file: Path) -> None:
        port = free_port()
        self.function_url = f"http://127.0.0.1:{port}"
        authorized = json.dumps(self.make_function_keys())
        self.procs.start(
            "function",
            [
                "function",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lab",
                str(lab_file),
            ],
            f"{self.function_url}/healthz",
            env={"LIBRA_FUNCTION_AUTHORIZED_KEYS": authorized},
        )

    def start_coordinator(self, host: str = DEFAULT_HOST, port: int | None = None) -> None:
        """The coordinator on `host:port` (a free port when None); the caller has checked
        that the address is loopback and the port free (libra/demo/listen.py)."""
        port = free_port(host) if port is None else port
        self.coordinator_url = http_url(host, port)
        data_dir = self.coordinator_config.parent
        data_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "data_dir": str(data_dir),
            "database_url": f"sqlite:///{data_dir / 'coordinator.sqlite3'}",
        }
        self.coordinator_config.write_text(tomli_w.dumps(config), encoding="utf-8")
        self.procs.start(
            "coordinator",
            [
                "coordinator",
                "serve",
                "--config",
                str(self.coordinator_config),
                "--host",
                host,
                "--port",
                str(port),
            ],
            f"{self.coordinator_url}/healthz",
        )
        # The picture is for holders of a viewer token, as for any international viewer.
        output = self.procs.run(
            "token-viewer",
            [
                "coordinator",
                "token",
                "create",
                "--name",
                "demo-viewer",
                "--role",
                "viewer",
                "--config",
                str(self.coordinator_config),
            ],
        )
        lines = output.strip().splitlines()
        if not lines:
            raise DemoStepFailed("`libra coordinator token create` printed no token")
        self.viewer_token = lines[-1].strip()

    def enroll_nodes(self, lab_file: Path, geo: tuple[Path, Path]) -> None:
        operators = self.write_operator_table()
        federation_key = self.workdir / "federation.key"
        # The federation key is shared by nodes only; the coordinator never sees it.
        federation_key.write_text(NodeKey.generate().seed_b64() + "\n", encoding="utf-8")
        federation_key.chmod(0o600)
        for plan in self.world.nodes:
            node_dir = self.workdir / "nodes" / plan.node_id
            args = [
                "node",
                "init",
                "--dir",
                str(node_dir),
                "--node-id",
                plan.node_id,
                "--country",
                plan.country,
                "--function-url",
                self.function_url,
                "--coordinator-url",
                self.coordinator_url,
                "--lab",
                str(lab_file),
                "--country-db",
                str(geo[0]),
                "--asn-db",
                str(geo[1]),
                "--federation-key-file",
                str(federation_key),
                # The key this node signs its function requests with (authorised there).
                "--function-key-file",
                str(self.function_keys[plan.node_id]),
            ]
            for seed in self.world.seed_urls(plan.node_id, self.web.port):
                args += ["--seed", seed]
            output = self.procs.run(f"init-{plan.node_id}", args)
            self.node_configs[plan.node_id] = node_dir / "node.toml"
            self.configure_notices(plan.node_id, plan.country, operators)
            # The operator's path: read the public key that `node init` prints.
            found = re.search(r"public key\s+([A-Za-z0-9+/=]{44})", output)
            if found is None:
                raise DemoStepFailed(f"`libra node init` printed no public key for {plan.node_id}")
            self.procs.run(
                f"register-{plan.node_id}",
                [
                    "coordinator",
                    "node",
                    "add",
                    "--config",
                    str(self.coordinator_config),
                    "--node-id",
                    plan.node_id,
                    "--country",
                    plan.country,
                    "--public-key",
                    found.group(1),
                    "--operator",
                    f"demo agency {plan.country}",
                ],
            )

    def enroll_discovery_node(self, lab_file: Path, geo: tuple[Path, Path]) -> None:
        """The fourth node: `libra node init` and its list (ICSE CSV, hashes only). Not
        registered at the coordinator and never reporting: the picture's truth is unchanged."""
        if self.discovery is None or self.discovery_web is None:
            return
        node_id = self.discovery.node_id
        node_dir = self.workdir / "nodes" / node_id
        args = [
            "node",
            "init",
            "--dir",
            str(node_dir),
            "--node-id",
            node_id,
            "--country",
            self.discovery.world.nodes[0].country,
            "--function-url",
            self.function_url,
            "--coordinator-url",
            self.coordinator_url,
            "--lab",
            str(lab_file),
            "--country-db",
            str(geo[0]),
            "--asn-db",
            str(geo[1]),
            "--function-key-file",
            str(self.function_keys[node_id]),
        ]
        for seed in self.discovery.seed_urls(self.discovery_web.port):
            args += ["--seed", seed]
        self.procs.run(f"init-{node_id}", args)
        config = node_dir / "node.toml"
        lists = node_dir / "lists"
        lists.mkdir(parents=True, exist_ok=True)
        list_file = lists / "list.csv"
        list_file.write_text(self.discovery.icse_list(), encoding="utf-8")
        self.procs.run(
            f"list-{node_id}",
            ["node", "list", "import", str(list_file), "--format", "icse", "--config", str(config)],
        )
        self.discovery_config = config

    def new_material(self) -> DiscoveryResult | None:
        """The new-material step (libra/demo/discovery_demo.py)."""
        if self.discovery is None or self.discovery_config is None:
            return None
        node = DiscoveryNode(self.procs, self.discovery_config, self.budget.crawl_s)
        return run_discovery(node, self.discovery, self.console)

    def configure_notices(self, node_id: str, country: str, operators: Path) -> None:
        """Notices on, sent without approval, re-notice after 24 h, escalate after three;
        contacts from the operator table only (no RDAP in the lab)."""
        path = self.node_configs[node_id]
        config = tomllib.loads(path.read_text(encoding="utf-8"))
        config["notices"] = {
            "enabled": True,
            "require_approval": False,
            "renotice_hours": 24.0,
            "escalate_after": 3,
            "reporter_org": f"Demo agency {country}",
            "reporter_contact": f"notices@{node_id}.police.test",
            "reporter_domain": "police.test",
            "webhook_secret_file": str(self.webhook_key),
        }
        config["attribution"] = {"operators_file": str(operators)}
        config["contacts"] = {"rdap": False}
        path.write_text(tomli_w.dumps(config), encoding="utf-8")

    def import_lists(self) -> None:
        for plan in self.world.nodes:
            config = self.node_configs[plan.node_id]
            for list_format, path in write_node_lists(
                self.world, plan.node_id, config.parent / "lists"
            ):
                self.procs.run(
                    f"list-{plan.node_id}",
                    [
                        "node",
                        "list",
                        "import",
                        str(path),
                        "--format",
                        list_format,
                        "--config",
                        str(config),
                    ],
                )

    def crawl_all(self, at: datetime) -> None:
        running = {
            node_id: self.procs.spawn(
                f"crawl-{node_id}",
                ["node", "crawl", "--config", str(cfg), "--at", _stamp(at)],
            )
            for node_id, cfg in self.node_configs.items()
        }
        # The nodes crawl at once, so they share one deadline.
        deadline = time.monotonic() + self.budget.crawl_s
        try:
            for node_id, proc in running.items():
                left = max(1.0, deadline - time.monotonic())
                self.procs.wait(f"crawl-{node_id}", proc, timeout=left)
        finally:
            for proc in running.values():  # after a failure: no crawl outlives the demo
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def notices_and_reports(
        self, day: int, at: datetime, period: tuple[datetime, datetime]
    ) -> None:
        """Each node's notices run, one node after the other (the order the truth assumes);
        each node reports the period as soon as its own notices are done, while the next
        node's notices run (nodes share nothing but the coordinator). After each run, the
        hosters' desks must have received what the truth has that node send on ``day``."""
        self.sim.run(until=day)
        reports: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for plan in self.world.nodes:
                config = str(self.node_configs[plan.node_id])
                started = time.monotonic()
                before, refused_before = dict(self.live.notices), self.live.rejected
                output = self.procs.run(
                    f"notices-{plan.node_id}",
                    ["node", "notices", "run", "--config", config, "--at", _stamp(at)],
                )
                self.notice_seconds.append(time.monotonic() - started)
                short = missing_deliveries(
                    self.sim.delivered, day, plan.node_id, before, dict(self.live.notices)
                )
                if short:  # said now, not as a picture that differs days later
                    refused = self.live.rejected - refused_before
                    said = "; ".join(line.strip() for line in output.splitlines())
                    raise DemoStepFailed(
                        f"{at:%Y-%m-%d}: {plan.node_id}'s notices did not reach the hosters: "
                        f"{', '.join(map(str, short))}; the desks refused {refused} as badly "
                        f"signed or malformed (the node printed: {said}); "
                        f"see {self.procs.log_dir / f'notices-{plan.node_id}.log'}"
                    )
                reports[plan.node_id] = self.procs.spawn(
                    f"report-{plan.node_id}",
                    [
                        "node",
                        "report",
                        "--config",
                        config,
                        "--period-start",
                        _stamp(period[0]),
                        "--period-end",
                        _stamp(period[1]),
                    ],
                )
            for node_id, proc in reports.items():
                self.procs.wait(f"report-{node_id}", proc, timeout=self.budget.command_s)
        finally:
            for proc in reports.values():  # after a failure: no report outlives the step
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def get(self, path: str, params: dict[str, str]) -> Any:
        try:
            response = httpx.get(
                f"{self.coordinator_url}{path}",
                params=params,
                headers={"authorization": f"Bearer {self.viewer_token}"},
                timeout=self.budget.request_s,
                trust_env=False,
            )
        except httpx.HTTPError as exc:  # one clear line, not httpx's traceback
            raise DemoStepFailed(
                f"GET {path} from the coordinator: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code != 200:
            raise DemoStepFailed(f"GET {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def picture(
        self, period: tuple[datetime, datetime], media: str | None = None
    ) -> dict[str, Any]:
        """The coordinator's picture of `period` (with `media`: only that media's matches)."""
        params = {"period_start": _stamp(period[0]), "period_end": _stamp(period[1])}
        data: dict[str, Any] = self.get(
            "/v1/picture", params if media is None else {**params, "media": media}
        )
        return data

    def stop(self) -> None:
        self.procs.stop_all()
        self.web.stop()
        if self.discovery_web is not None:
            self.discovery_web.stop()


def run_demo(
    options: DemoOptions,
    console: Console | None = None,
    keep_running: bool = False,
    on_result: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    console = console or Console()
    started = time.monotonic()
    today = options.today or datetime.now(UTC)
    with _workdir(options) as workdir:
        history = demo_history(options)
        periods = day_periods(today, history.periods)
        dworld = discovery_world(options.seed, options.scale) if options.discovery else None
        federation = Federation(history, workdir, console, dworld)
        try:
            total = 5 + len(periods) + 1 + (dworld is not None)
            with Steps(console, total=total) as steps:
                steps.start("synthetic web, abuse webhooks and lab GeoIP")
                lab_file = federation.start_world()
                geo = write_lab_geoip(history.world, workdir / "geoip")
                steps.start("remote-hash function")
                federation.start_function(lab_file)
                steps.start("coordinator")
                federation.start_coordinator(options.host, options.port)
                steps.start("three nodes: keys, registration, notices to hosters")
                federation.enroll_nodes(lab_file, geo)
                federation.enroll_discovery_node(lab_file, geo)
                steps.start("private hash lists")
                federation.import_lists()
                pictures: list[dict[str, Any]] = []
                video_pictures: list[dict[str, Any]] = []
                coverage: list[dict[str, Any]] = []
                for index, period in enumerate(periods):
                    steps.start(f"{period[0]:%a %d %b}: crawl, notices, reports")
                    federation.live.set_epoch(index)
                    federation.crawl_all(period[0] + CRAWL_AT)
                    federation.notices_and_reports(index, notice_moment(period[0], index), period)
                    pictures.append(federation.picture(period))
                    video_pictures.append(federation.picture(period, media="video"))
                    span = {"period_start": _stamp(period[0]), "period_end": _stamp(period[1])}
                    coverage.append(federation.get("/v1/coverage", span))
                discovery = None
                if dworld is not None:
                    steps.start(
                        "new material: a discovery node, its candidates against the truth, "
                        "verdicts, second crawl"
                    )
                    discovery = federation.new_material()
                steps.start("removals and displacement flows")
                window = {
                    "period_start": _stamp(periods[0][0]),
                    "period_end": _stamp(periods[-1][1]),
                }
                removals = federation.get("/v1/picture/removals", window)
                flows = {
                    by: federation.get("/v1/flows", {**window, "by": by})
                    for by in ("hoster", "country")
                }
                shifts = [
                    federation.get(
                        "/v1/picture/shifts",
                        {
                            "before_start": _stamp(a[0]),
                            "before_end": _stamp(a[1]),
                            "after_start": _stamp(b[0]),
                            "after_end": _stamp(b[1]),
                        },
                    )
                    for a, b in itertools.pairwise(periods)
                ]
            result = _result(
                federation,
                history,
                periods,
                (pictures, coverage, video_pictures),
                removals,
                flows,
                shifts,
                started,
            )
            result.discovery = discovery
            if on_result is not None:
                on_result(result)
            if keep_running:
                _serve_until_interrupted(console, federation)
            return result
        except DemoStepFailed as exc:
            if str(workdir) in str(exc):  # it names its log already
                raise
            raise DemoStepFailed(f"{exc} (logs: {workdir / 'logs'})") from exc
        finally:
            federation.stop()


def _result(
    federation: Federation,
    history: History,
    periods: list[tuple[datetime, datetime]],
    answers: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]],
    removals: dict[str, Any],
    flows: dict[str, dict[str, Any]],
    shifts: list[dict[str, Any]],
    started: float,
) -> DemoResult:
    world = history.world
    pictures, coverage, video_pictures = answers
    sim = NoticeSimulation(history).run(until=history.periods - 1)
    families = node_list_families(world)
    results = []
    videos = []
    for index, (period, picture) in enumerate(zip(periods, pictures, strict=True)):
        truth = world.tally(sim.matches[index])
        expected = expected_from_truth(truth, families)
        results.append(
            PeriodResult(
                index, period[0], period[1], compare_picture(picture, expected), picture, expected
            )
        )
        videos.append(check_videos(world, truth, families, video_pictures[index], picture))
    # A measured time to removal is the scripted one plus the difference of the real seconds
    # into the two notices runs (the first notice's and the re-check's): at most one run.
    tolerance = int(max(federation.notice_seconds, default=0.0)) + 5
    notice_at = [int(notice_moment(p[0], i).timestamp()) for i, p in enumerate(periods)]
    policies = {key: policy_text(key) for key in (h.key for h in world.hosters)}
    removal_checks = check_removals(
        sim, world, policies, removals.get("rows", []), notice_at, tolerance
    )
    keys = [(_stamp(p[0]), _stamp(p[1])) for p in periods]
    flow_checks = [check_flows(flows[by], sim, history, by, keys) for by in ("hoster", "country")]
    return DemoResult(
        periods=results,
        removals=removal_checks,
        flows=flow_checks,
        trends=check_shifts(shifts, [r.expected for r in results]),
        coverage=check_coverage(coverage, sim, [r.expected for r in results]),
        coordinator_url=federation.coordinator_url,
        workdir=federation.workdir,
        seconds=time.monotonic() - started,
        tolerance_s=tolerance,
        history=history,
        notices_received=dict(federation.live.notices),
        videos=videos,
    )


def _serve_until_interrupted(console: Console, federation: Federation) -> None:
    console.print(
        f"\nCoordinator running at [bold]{federation.coordinator_url}[/bold] "
        f"(picture: {federation.coordinator_url}/v1/picture).\n"
        f"Dashboard: {federation.coordinator_url}/dashboard/ (log in with the viewer token "
        f"{federation.viewer_token}); all periods are in it.\nPress Ctrl-C to stop."
    )
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopping")
