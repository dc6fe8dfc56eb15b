"""The node on its own, end to end on loopback: init -> list import -> crawl -> report.

A synthetic site (lab host site.test), a fake remote-hash function that returns prepared
hashes (no image is ever made or fetched) and a fake coordinator that verifies signatures.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from sqlmodel import Session, select
from typer.testing import CliRunner

from node.cli.main import app
from node.config import load_settings
from node.federation.reporter import period_containing
from node.keys.files import load_signing_key
from node.models import AnalysedImage, CrawlCycle, OutboxItem, Sighting
from node.notices.models import Notice
from node.service import open_engine
from protocol.hashes import HashFamily
from protocol.models import utcnow
from tests.node.conftest import flip_bits, hash_result, image_hashes, write_geoip
from tests.node.fake_coordinator import CoordinatorState, RunningApp, RunningCoordinator, free_port

runner = CliRunner()


def site_app() -> FastAPI:
    site = FastAPI()

    @site.get("/robots.txt")
    async def robots() -> Response:
        return PlainTextResponse("User-agent: *\nAllow: /\n")

    @site.get("/")
    async def index() -> Response:
        return HTMLResponse(
            '<html><body><a href="/page2">next</a>'
            '<img src="/img/listed.png"><img src="/img/other.png"></body></html>'
        )

    @site.get("/page2")
    async def page2() -> Response:
        return HTMLResponse('<html><body><img src="/img/near.png"></body></html>')

    return site


def function_app(answers: dict[str, Any]) -> FastAPI:
    function = FastAPI()

    @function.post("/v1/analyze")
    async def analyze(body: dict[str, Any]) -> Any:
        name = body["url"].rsplit("/", 1)[-1]
        result = answers[name]
        return result.model_copy(update={"url": body["url"], "final_url": body["url"]}).model_dump(
            mode="json"
        )

    return function


SITE_IP = "127.0.1.7"  # Hoster A in the test GeoIP databases: its pages are attributed there


@dataclass
class LabNode:
    config: list[str]
    directory: Path
    answers: dict[str, Any]
    site_port: int
    function_port: int
    coordinator_port: int


def lab_node(tmp_path: Path) -> LabNode:
    """A node in lab mode with two lists imported: init -> list import (CLI)."""
    rng = random.Random(21)
    listed, near, other = image_hashes(rng), image_hashes(rng), image_hashes(rng)
    answers = {
        "listed.png": hash_result("x", listed, "127.0.1.20"),
        "near.png": hash_result("x", near, "127.0.2.30"),
        "other.png": hash_result("x", other, "127.0.1.20"),
    }
    site_port, function_port, coordinator_port = free_port(), free_port(), free_port()
    lab = tmp_path / "lab.toml"
    lab.write_text(f'allow_ports = [{site_port}]\n[hosts]\n"site.test" = "{SITE_IP}"\n')
    country_db, asn_db = write_geoip(tmp_path)
    directory = tmp_path / "node"
    init = runner.invoke(
        app,
        [
            "init",
            "--dir",
            str(directory),
            "--node-id",
            "node-de",
            "--country",
            "DE",
            "--function-url",
            f"http://127.0.0.1:{function_port}",
            "--coordinator-url",
            f"http://127.0.0.1:{coordinator_port}",
            "--seed",
            f"http://site.test:{site_port}/",
            "--lab",
            str(lab),
            "--country-db",
            str(country_db),
            "--asn-db",
            str(asn_db),
        ],
    )
    assert init.exit_code == 0, init.output
    config = ["--config", str(directory / "node.toml")]
    listfile = tmp_path / "list.txt"
    listfile.write_text(f"{listed.md5}\n")
    pdqfile = tmp_path / "pdq.txt"
    pdqfile.write_text(flip_bits(near.pdq, [1, 100, 200]) + "\n")
    assert runner.invoke(app, ["list", "import", str(listfile), *config]).exit_code == 0
    assert (
        runner.invoke(
            app, ["list", "import", str(pdqfile), "--algorithm", "pdq", *config]
        ).exit_code
        == 0
    )
    return LabNode(config, directory, answers, site_port, function_port, coordinator_port)


def test_init_import_crawl_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    node = lab_node(tmp_path)
    directory, config, answers = node.directory, node.config, node.answers
    site_port, function_port = node.site_port, node.function_port
    coordinator_port = node.coordinator_port
    key = load_signing_key(directory / "node.key")
    state = CoordinatorState(keys={key.key_id: key.verify_key})
    with (
        RunningApp(site_app(), site_port, SITE_IP),
        RunningApp(function_app(answers), function_port),
        RunningCoordinator(state, coordinator_port),
    ):
        crawl = runner.invoke(app, ["crawl", *config])
        assert crawl.exit_code == 0, crawl.output
        assert "done" in crawl.output
        report = runner.invoke(app, ["report", *config])
        assert report.exit_code == 0, report.output

    (received,) = state.received
    cells = {
        (c.country, c.asn, c.hoster, c.hash_family): (c.matches, c.distinct) for c in received.cells
    }
    assert cells == {
        ("DE", 64500, "Hoster A", HashFamily.MD5): (1, 1),
        ("NL", 64501, "Hoster B", HashFamily.PDQ): (1, 1),
    }
    d = received.denominators
    assert (d.pages_fetched, d.images_hashed, d.hosts_seen) == (2, 3, 1)
    # Issue 16: pages attributed by the address that served them, images like sightings.
    coverage = {
        (r.country, r.asn, r.hoster): (r.pages_fetched, r.images_hashed) for r in received.coverage
    }
    assert coverage == {("DE", 64500, "Hoster A"): (2, 2), ("NL", 64501, "Hoster B"): (0, 1)}
    assert all(c.items == 1 and c.url_theta and c.item_theta for c in received.cells)


def test_lab_clock_crawl_notices_and_report_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--at` (lab mode): the cycle, its sightings and the notices are recorded at the lab's
    moment plus the real time elapsed; the report covers the lab's past periods but is signed
    at the real time."""
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    node = lab_node(tmp_path)
    path = node.directory / "node.toml"
    text = path.read_text().replace('period = "day"', 'period = "5m"')
    path.write_text(text + "\n[contacts]\nrdap = false\n")
    # Two days ago (inside the coordinator's 400-day window), a minute into a 5-minute period.
    at = period_containing(utcnow() - timedelta(days=2), "5m").start + timedelta(minutes=1)
    key = load_signing_key(node.directory / "node.key")
    state = CoordinatorState(keys={key.key_id: key.verify_key})
    real_start, started = utcnow(), time.monotonic()
    with (
        RunningApp(site_app(), node.site_port, SITE_IP),
        RunningApp(function_app(node.answers), node.function_port),
        RunningCoordinator(state, node.coordinator_port),
    ):
        crawl = runner.invoke(app, ["crawl", "--at", at.isoformat(), *node.config])
        assert crawl.exit_code == 0, crawl.output
        notices = runner.invoke(
            app, ["notices", "run", "--at", (at + timedelta(minutes=2)).isoformat(), *node.config]
        )
        assert notices.exit_code == 0, notices.output
        report = runner.invoke(
            app, ["report", "--at", (at + timedelta(minutes=5)).isoformat(), *node.config]
        )
        assert report.exit_code == 0, report.output
    # However long the commands took for real, nothing is stamped beyond it.
    elapsed = timedelta(seconds=math.ceil(time.monotonic() - started) + 1)
    engine = open_engine(load_settings(path))
    with Session(engine) as session:
        (cycle,) = session.exec(select(CrawlCycle)).all()
        sightings = session.exec(select(Sighting)).all()
        analysed = session.exec(select(AnalysedImage)).all()
        created = [n.created_at for n in session.exec(select(Notice)).all()]
    engine.dispose()
    assert at <= cycle.started_at <= cycle.finished_at <= at + elapsed  # type: ignore[operator]
    assert len(sightings) == 2 and len(analysed) == 3
    for moment in [s.seen_at for s in sightings] + [a.analysed_at for a in analysed]:
        assert at <= moment <= at + elapsed
    later = at + timedelta(minutes=2)
    assert created and all(later <= moment <= later + elapsed for moment in created)
    # The crawl's period was past at --at: reported, then the current (empty) one.
    first, current = state.received
    assert first.period == period_containing(at, "5m") and len(first.cells) == 2
    assert current.period.start == first.period.end and current.cells == []
    assert all(r.created_at >= real_start.replace(microsecond=0) for r in state.received)


def test_at_is_refused_outside_lab_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    directory = tmp_path / "prod"
    made = runner.invoke(
        app,
        ["init", "--dir", str(directory), "--node-id", "node-p", "--country", "DE",
         "--seed", "http://a.test/"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    config = ["--config", str(directory / "node.toml")]
    for command in (["crawl"], ["report"], ["notices", "run"]):
        result = runner.invoke(app, [*command, "--at", "2026-03-01T10:00:00Z", *config])
        assert result.exit_code == 2, (command, result.output)
        assert "--at is only accepted in lab mode" in result.output, command
    engine = open_engine(load_settings(directory / "node.toml"))
    with Session(engine) as session:  # refused before anything was recorded
        assert session.exec(select(CrawlCycle)).all() == []
        assert session.exec(select(OutboxItem)).all() == []
    engine.dispose()
    (tmp_path / "lab").mkdir()
    lab = lab_node(tmp_path / "lab")
    bad = runner.invoke(app, ["crawl", "--at", "yesterday", *lab.config])
    assert bad.exit_code == 2 and "--at: 'yesterday' is not an ISO 8601 timestamp" in bad.output
