"""`libra node crawl` is never silent about what stopped it (issue 17), run for real on loopback:
a lab file without the site's port, a page budget reached, a budget of a million (not the
progress total), ``--seeds-file``.

A loopback site (lab host site.test: an index linking to PAGES pages with one image each) and a
fake remote-hash function that answers from a prepared result; no image is ever made or fetched.
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
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from typer.testing import CliRunner

from node.cli.main import app
from tests.node.conftest import hash_result, image_hashes, write_geoip
from tests.node.fake_coordinator import RunningApp, free_port

runner = CliRunner()
PAGES = 10  # /p/0 .. /p/9, all linked from the index


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def site_app() -> FastAPI:
    site = FastAPI()

    @site.get("/robots.txt")
    async def robots() -> Response:
        return PlainTextResponse("User-agent: *\nAllow: /\n")

    @site.get("/")
    async def index() -> Response:
        links = "".join(f'<a href="/p/{n}">{n}</a>' for n in range(PAGES))
        return HTMLResponse(f"<html><body>{links}</body></html>")

    @site.get("/p/{n}")
    async def page(n: int) -> Response:
        return HTMLResponse(f'<html><body><img src="/img/{n}.png"></body></html>')

    return site


def function_app() -> FastAPI:
    ok = hash_result("x", image_hashes(random.Random(3)))
    function = FastAPI()

    @function.post("/v1/analyze")
    async def analyze(body: dict[str, Any]) -> Any:
        update = {"url": body["url"], "final_url": body["url"]}
        return ok.model_copy(update=update).model_dump(mode="json")

    return function


def make_node(tmp_path: Path, site_port: int, function_port: int, **crawl: Any) -> Path:
    """A node on the lab web; ``allow_port=False`` leaves the site's port out of the lab."""
    allow = crawl.pop("allow_port", True)
    lab = tmp_path / "lab.toml"
    ports = f"allow_ports = [{site_port}]\n" if allow else ""
    lab.write_text(f'{ports}[hosts]\n"site.test" = "127.0.0.1"\n')
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
    document["dispatch"]["retries"] = 0
    document["crawl"].update(crawl)
    config.write_text(tomli_w.dumps(document), encoding="utf-8")
    return config


def line(output: str, label: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}\s+(.*)$", output, re.MULTILINE)
    assert found is not None, f"no {label!r} line in:\n{output}"
    return found.group(1).strip()


def crawl(config: Path, *extra: str) -> Any:
    site_port = int(tomllib.loads(config.read_text())["seeds"][0].split(":")[2].rstrip("/"))
    function_port = int(tomllib.loads(config.read_text())["function_url"].rsplit(":", 1)[1])
    with RunningApp(site_app(), site_port), RunningApp(function_app(), function_port):
        return runner.invoke(app, ["crawl", "--config", str(config), *extra])


def test_a_lab_file_without_the_port_fails_with_the_reason(tmp_path: Path) -> None:
    site_port = free_port()
    config = make_node(tmp_path, site_port, free_port(), allow_port=False)
    result = crawl(config)
    assert result.exit_code == 1, result.output
    why = f"port {site_port} is not allowed in the lab (lab file {tmp_path / 'lab.toml'})"
    # Before the crawl: the seed is named; after it: the counts, an example and the error.
    assert f"seed http://site.test:{site_port}/ cannot be crawled: {why}" in result.stderr
    assert line(result.stdout, "pages fetched") == "0"
    assert line(result.stdout, "pages failed") == "1: blocked_destination 1"
    assert (
        line(result.stdout, "blocked_destination") == f"e.g. http://site.test:{site_port}/: {why}"
    )
    assert "error: no page could be fetched: 1 page(s) failed (blocked_destination 1)" in (
        result.stderr
    )


def test_a_page_budget_reached_says_how_many_pages_were_left_and_exits_0(
    tmp_path: Path,
) -> None:
    config = make_node(tmp_path, free_port(), free_port(), max_pages=4)
    result = crawl(config)
    assert result.exit_code == 0, result.output
    # The index and 3 of its 10 links were crawled; the other 7 links were left.
    assert line(result.stdout, "pages fetched") == "4"
    assert line(result.stdout, "page budget") == (
        "reached (max_pages 4): 7 more page(s) found, not crawled"
    )
    assert line(result.stdout, "images hashed") == "3"


def test_the_progress_total_is_the_pages_found_not_a_million(tmp_path: Path) -> None:
    config = make_node(tmp_path, free_port(), free_port(), max_pages=1_000_000)
    result = crawl(config)
    assert result.exit_code == 0, result.output
    assert line(result.stdout, "page budget") == "not reached (11 of max_pages 1000000)"
    pages_bar = line(result.stderr, "pages")
    assert "11/11" in pages_bar and "1000000" not in pages_bar, result.stderr


def test_seeds_file_replaces_the_configured_seeds(tmp_path: Path) -> None:
    site_port = free_port()
    config = make_node(tmp_path, site_port, free_port())
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(
        f"# two pages, no index\n\nhttp://site.test:{site_port}/p/1\n"
        f"  http://site.test:{site_port}/p/2  \n"
    )
    result = crawl(config, "--seeds-file", str(seeds))
    assert result.exit_code == 0, result.output
    assert line(result.stdout, "pages fetched") == "2"  # not the TOML's index and its links
    assert line(result.stdout, "images hashed") == "2"


def test_a_seeds_file_with_bad_lines_is_refused_with_their_numbers(tmp_path: Path) -> None:
    config = make_node(tmp_path, free_port(), free_port())
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("http://site.test/\nsite.test/no-scheme\n# fine\nftp://x.test/\n")
    result = runner.invoke(app, ["crawl", "--config", str(config), "--seeds-file", str(seeds)])
    assert result.exit_code == 2, result.output
    assert (
        f"{seeds}: 2 line(s) are not http(s) URLs: line 2: 'site.test/no-scheme'; "
        "line 4: 'ftp://x.test/'"
    ) in result.stderr
    assert "Traceback" not in result.output


def test_the_pages_total_grows_with_the_pages_found_capped_by_max_pages() -> None:
    import io

    from rich.console import Console

    from node.cycle import CycleStats, RichCycleProgress

    known: list[int | None] = [None]
    progress = RichCycleProgress(5, Console(file=io.StringIO()), known_pages=lambda: known[0])

    def total() -> float | None:  # the display's own task (no public accessor)
        return next(t.total for t in progress._progress.tasks if t.description == "pages")

    progress.update(CycleStats())
    assert total() is None  # not known yet: no total rather than max_pages
    for found, expected in ((1, 1), (4, 4), (9, 5)):
        known[0] = found
        progress.update(CycleStats(pages_fetched=1))
        assert total() == expected
    known[0] = 2  # fewer known than done (a resumed run): never a total below what is done
    progress.update(CycleStats(pages_fetched=3))
    assert total() == 3


def test_a_missing_lab_file_is_a_clear_configuration_error(tmp_path: Path) -> None:
    config = make_node(tmp_path, free_port(), free_port())
    (tmp_path / "lab.toml").unlink()
    result = runner.invoke(app, ["crawl", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"cannot read the lab file {tmp_path / 'lab.toml'}: No such file" in result.stderr
    assert "Traceback" not in result.output
