"""The demo: a whole federation on loopback, checked against the synthetic world's ground truth.

Every component runs as its own `libra` process talking HTTP; this module only sets up the
world, starts them, issues the same commands an operator would, and compares the coordinator's
picture with the truth computed from the world model alone (never from hashes).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from libra.demo.budget import DemoBudget
from libra.demo.compare import Comparison, compare_picture, expected_picture
from libra.demo.labgeo import write_lab_geoip
from libra.demo.lists import node_list_families, write_node_lists
from libra.demo.processes import DemoStepFailed, ProcessGroup, free_port
from libra.demo.web import SyntheticWeb
from libra.demo.world import World
from protocol.keys import NodeKey

DEFAULT_SEED = 20261124


@dataclass(frozen=True)
class DemoOptions:
    seed: int = DEFAULT_SEED
    scale: float = 1.0
    workdir: Path | None = None
    keep_workdir: bool = False


@dataclass
class DemoResult:
    comparison: Comparison
    picture: dict[str, Any]
    expected: dict[str, Any]
    coordinator_url: str
    workdir: Path
    seconds: float
    node_summaries: dict[str, str] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        return self.comparison.agrees


def _demo_period(now: datetime) -> tuple[datetime, datetime]:
    # A period that surely contains the whole run, even across midnight.
    start = now.replace(minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


@contextmanager
def _workdir(options: DemoOptions) -> Iterator[Path]:
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        yield options.workdir
        return
    path = Path(tempfile.mkdtemp(prefix="libra-demo-"))
    try:
        yield path
    finally:
        if not options.keep_workdir:
            shutil.rmtree(path, ignore_errors=True)


class Federation:
    """The running demo federation: web, function, coordinator and node directories."""

    def __init__(self, world: World, workdir: Path, console: Console) -> None:
        self.world = world
        self.workdir = workdir
        self.console = console
        # Every step is bounded by a budget derived from the world's size (hangs fail clearly).
        self.budget = DemoBudget.for_world(world)
        self.procs = ProcessGroup(
            workdir / "logs",
            service_timeout=self.budget.service_s,
            command_timeout=self.budget.command_s,
        )
        self.web = SyntheticWeb(world)
        self.function_url = ""
        self.coordinator_url = ""
        self.coordinator_config = workdir / "coordinator" / "coordinator.toml"
        self.node_configs: dict[str, Path] = {}
        self.function_keys: dict[str, Path] = {}
        self.viewer_token = ""

    def start_world(self) -> Path:
        self.web.start()
        lab_file = self.workdir / "lab.toml"
        lab_file.write_text(
            tomli_w.dumps(self.web.lab_network().model_dump(mode="json")), encoding="utf-8"
        )
        return lab_file

    def make_function_keys(self) -> dict[str, str]:
        """One request-signing key per node; the function accepts exactly these callers."""
        authorized: dict[str, str] = {}
        for plan in self.world.nodes:
            key = NodeKey.generate()
            path = self.workdir / "function-keys" / f"{plan.node_id}.key"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(key.seed_b64() + "\n", encoding="utf-8")
            path.chmod(0o600)
            self.function_keys[plan.node_id] = path
            authorized[plan.node_id] = key.public_key_b64
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

    def start_coordinator(self) -> None:
        port = free_port()
        self.coordinator_url = f"http://127.0.0.1:{port}"
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
                "127.0.0.1",
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

    def import_lists(self) -> None:
        for plan in self.world.nodes:
            config = self.node_configs[plan.node_id]
            files = write_node_lists(self.world, plan.node_id, config.parent / "lists")
            for family, path in files:
                self.procs.run(
                    f"list-{plan.node_id}",
                    [
                        "node",
                        "list",
                        "import",
                        str(path),
                        "--format",
                        "libra-hash" if path.suffix == ".jsonl" else "plain",  # issue 18
                        "--algorithm",
                        family,
                        "--config",
                        str(config),
                    ],
                )

    def crawl_all(self) -> None:
        running = {
            node_id: self.procs.spawn(f"crawl-{node_id}", ["node", "crawl", "--config", str(cfg)])
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

    def report_all(self, period: tuple[datetime, datetime]) -> None:
        for node_id, cfg in self.node_configs.items():
            self.procs.run(
                f"report-{node_id}",
                [
                    "node",
                    "report",
                    "--config",
                    str(cfg),
                    "--period-start",
                    period[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "--period-end",
                    period[1].strftime("%Y-%m-%dT%H:%M:%SZ"),
                ],
            )

    def picture(self, period: tuple[datetime, datetime]) -> dict[str, Any]:
        response = httpx.get(
            f"{self.coordinator_url}/v1/picture",
            params={
                "period_start": period[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "period_end": period[1].strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            headers={"authorization": f"Bearer {self.viewer_token}"},
            timeout=self.budget.request_s,
            trust_env=False,
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def stop(self) -> None:
        self.procs.stop_all()
        self.web.stop()


def run_demo(
    options: DemoOptions,
    console: Console | None = None,
    keep_running: bool = False,
    on_result: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    console = console or Console()
    started = time.monotonic()
    period = _demo_period(datetime.now(UTC))
    with _workdir(options) as workdir:
        world = World.build(seed=options.seed, scale=options.scale)
        federation = Federation(world, workdir, console)
        steps = [
            "synthetic web and lab GeoIP",
            "remote-hash function",
            "coordinator",
            "three nodes: keys and registration",
            "private hash lists",
            "crawl cycle on every node",
            "signed reports to the coordinator",
            "global picture",
        ]
        try:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress:

                def step(index: int) -> None:
                    progress.add_task(f"[{index + 1}/{len(steps)}] {steps[index]}", total=None)

                step(0)
                lab_file = federation.start_world()
                geo = write_lab_geoip(world, workdir / "geoip")
                step(1)
                federation.start_function(lab_file)
                step(2)
                federation.start_coordinator()
                step(3)
                federation.enroll_nodes(lab_file, geo)
                step(4)
                federation.import_lists()
                step(5)
                federation.crawl_all()
                step(6)
                federation.report_all(period)
                step(7)
                picture = federation.picture(period)
            expected = expected_picture(world, node_list_families(world))
            comparison = compare_picture(picture, expected)
            result = DemoResult(
                comparison=comparison,
                picture=picture,
                expected=expected,
                coordinator_url=federation.coordinator_url,
                workdir=workdir,
                seconds=time.monotonic() - started,
            )
            if on_result is not None:
                on_result(result)
            if keep_running:
                _serve_until_interrupted(console, federation)
            return result
        except DemoStepFailed as exc:
            raise DemoStepFailed(f"{exc} (logs: {workdir / 'logs'})") from exc
        finally:
            federation.stop()


def _serve_until_interrupted(console: Console, federation: Federation) -> None:
    console.print(
        f"\nCoordinator running at [bold]{federation.coordinator_url}[/bold] "
        f"(picture: {federation.coordinator_url}/v1/picture).\n"
        f"Dashboard: {federation.coordinator_url}/dashboard/ (log in with the viewer token "
        f"{federation.viewer_token}).\nPress Ctrl-C to stop."
    )
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopping")
