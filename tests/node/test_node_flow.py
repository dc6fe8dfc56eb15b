"""The node on its own, end to end on loopback: init -> list import -> crawl -> report.

A synthetic site (lab host site.test), a fake remote-hash function that returns prepared
hashes (no image is ever made or fetched) and a fake coordinator that verifies signatures.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from typer.testing import CliRunner

from node.cli import app
from node.keys import load_signing_key
from protocol.hashes import HashFamily
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


def test_init_import_crawl_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    rng = random.Random(21)
    listed, near, other = image_hashes(rng), image_hashes(rng), image_hashes(rng)
    answers = {
        "listed.png": hash_result("x", listed, "127.0.1.20"),
        "near.png": hash_result("x", near, "127.0.2.30"),
        "other.png": hash_result("x", other, "127.0.1.20"),
    }
    site_port, function_port, coordinator_port = free_port(), free_port(), free_port()
    lab = tmp_path / "lab.toml"
    lab.write_text(f'allow_ports = [{site_port}]\n[hosts]\n"site.test" = "127.0.0.1"\n')
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

    key = load_signing_key(directory / "node.key")
    state = CoordinatorState(keys={key.key_id: key.verify_key})
    with (
        RunningApp(site_app(), site_port),
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
