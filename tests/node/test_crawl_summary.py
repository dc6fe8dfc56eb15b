"""`libra node crawl` says what happened (issue 12): robots.txt skips apart from failures, the
reasons of failed pages and images as counts per code, and a non-zero exit when images were
found but none could be analysed.

A loopback site (lab host site.test) and a fake remote-hash function that answers from a table;
no image is ever made or fetched.
"""

from __future__ import annotations

import random
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from node.cli.main import app
from node.cycle import CycleSummary, breakdown
from tests.node.conftest import hash_result, image_hashes, write_geoip
from tests.node.fake_coordinator import RunningApp, free_port

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def site_app() -> FastAPI:
    site = FastAPI()

    @site.get("/robots.txt")
    async def robots() -> Response:
        return PlainTextResponse("User-agent: *\nDisallow: /private\n")

    @site.get("/")
    async def index() -> Response:
        return HTMLResponse(
            '<html><body><a href="/private/a">a</a><a href="/private/b">b</a>'
            '<a href="/missing">gone</a><a href="/page2">next</a>'
            '<img src="/img/ok.png"><img src="/img/blocked.png"><img src="/img/notimg1.png">'
            "</body></html>"
        )

    @site.get("/page2")
    async def page2() -> Response:
        return HTMLResponse('<html><body><img src="/img/notimg2.png"></body></html>')

    @site.get("/missing")
    async def missing() -> Response:
        return PlainTextResponse("gone", status_code=404)

    @site.get("/private/{name}")
    async def private(name: str) -> Response:  # never fetched: robots.txt disallows it
        raise AssertionError(f"crawler fetched /private/{name} against robots.txt")

    return site


def function_app() -> FastAPI:
    rng = random.Random(12)
    ok = hash_result("x", image_hashes(rng))
    function = FastAPI()

    @function.post("/v1/analyze")
    async def analyze(body: dict[str, Any]) -> Any:
        name = body["url"].rsplit("/", 1)[-1]
        if name == "ok.png":
            return ok.model_copy(update={"url": body["url"], "final_url": body["url"]}).model_dump(
                mode="json"
            )
        code, status = ("blocked_address", 403) if name == "blocked.png" else ("not_image", 422)
        return JSONResponse({"error": {"code": code, "message": name}}, status_code=status)

    return function


def make_node(tmp_path: Path, site_port: int, function_port: int) -> list[str]:
    lab = tmp_path / "lab.toml"
    lab.write_text(f'allow_ports = [{site_port}]\n[hosts]\n"site.test" = "127.0.0.1"\n')
    country_db, asn_db = write_geoip(tmp_path)
    directory = tmp_path / "node"
    init = runner.invoke(
        app,
        ["init", "--dir", str(directory), "--node-id", "node-de", "--country", "DE",
         "--function-url", f"http://127.0.0.1:{function_port}",
         "--seed", f"http://site.test:{site_port}/", "--lab", str(lab),
         "--country-db", str(country_db), "--asn-db", str(asn_db)],
    )  # fmt: skip
    assert init.exit_code == 0, init.output
    config = directory / "node.toml"
    document = tomllib.loads(config.read_text(encoding="utf-8"))
    document["dispatch"]["retries"] = 0  # an unreachable function fails at once
    config.write_text(tomli_w.dumps(document), encoding="utf-8")
    return ["--config", str(config)]


def line(output: str, label: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}\s+(.*)$", output, re.MULTILINE)
    assert found is not None, f"no {label!r} line in:\n{output}"
    return found.group(1).strip()


def test_robots_skips_are_not_failures_and_failures_say_why(tmp_path: Path) -> None:
    site_port, function_port = free_port(), free_port()
    config = make_node(tmp_path, site_port, function_port)
    with RunningApp(site_app(), site_port), RunningApp(function_app(), function_port):
        result = runner.invoke(app, ["crawl", *config])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert line(out, "pages fetched") == "2"
    assert line(out, "pages skipped by robots.txt") == "2"
    assert line(out, "pages failed") == "1: http_404 1"
    assert line(out, "images found") == "4"
    assert line(out, "images hashed") == "1"
    assert line(out, "images failed") == "3: not_image 2, blocked_address 1"


def test_nothing_analysed_exits_non_zero(tmp_path: Path) -> None:
    site_port, function_port = free_port(), free_port()  # nothing listens on function_port
    config = make_node(tmp_path, site_port, function_port)
    with RunningApp(site_app(), site_port):
        result = runner.invoke(app, ["crawl", *config])
    assert result.exit_code == 1, result.output
    assert line(result.stdout, "images failed") == "4: function_unreachable 4"
    assert "4 image(s) found but none could be analysed (function_unreachable 4)" in result.output
    assert f"127.0.0.1:{function_port}" in result.output


def test_breakdown_orders_by_count_then_code() -> None:
    assert breakdown({"timeout": 7, "blocked_address": 5}) == "timeout 7, blocked_address 5"
    assert breakdown({"b": 2, "a": 2, "c": 9, "z": 0}) == "c 9, a 2, b 2"
    assert breakdown({}) == ""


@pytest.mark.parametrize(
    ("found", "hashed", "expected"), [(0, 0, False), (3, 0, True), (3, 1, False)]
)
def test_nothing_analysed_means_images_but_no_hash(found: int, hashed: int, expected: bool) -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    summary = CycleSummary(
        cycle_id=1, status="done", started_at=moment, finished_at=moment, pages_fetched=1,
        pages_failed=0, images_found=found, images_hashed=hashed,
        analysis_failures=found - hashed, matches=0, hosts_seen=1,
    )  # fmt: skip
    assert summary.nothing_analysed is expected


def test_a_resumed_cycle_keeps_the_failure_reasons(engine: Engine) -> None:
    """A cycle continued after a kill reports the reasons of the failures recorded before it."""
    from node import cycle
    from node.models import AnalysisFailure, CycleImage

    cycle_id, resumed = cycle.resume_or_start(engine, "seeds")
    assert not resumed
    with Session(engine) as session, session.begin():
        for n, code in enumerate(["timeout", "blocked_address", "timeout"]):
            url = f"http://site.test/{n}.png"
            session.add(CycleImage(cycle_id=cycle_id, url=url, outcome="failed"))
            session.add(
                AnalysisFailure(cycle_id=cycle_id, url=url, code=code, message="", http_status=None)
            )
    urls, stats = cycle._analysed_so_far(engine, cycle_id)
    assert len(urls) == 3 and stats.analysis_failures == 3
    assert dict(stats.image_failures) == {"timeout": 2, "blocked_address": 1}
