"""`libra node serve` opens the GeoIP/ASN databases once (issue 17): a database that cannot be
opened stops it at start with exit 78 (EX_CONFIG) and a clear message, in a real process; the
scheduled crawl cycles share the one attributor and print why their pages failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
from rich.console import Console
from typer.testing import CliRunner

from node.cli.main import EX_CONFIG, app
from node.config import load_settings
from tests.node.conftest import write_geoip
from tests.node.fake_coordinator import free_port

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)


def make_node(tmp_path: Path, site_port: int) -> Path:
    """A node whose lab file leaves out the site's port (every page is refused)."""
    lab = tmp_path / "lab.toml"
    lab.write_text('[hosts]\n"site.test" = "127.0.0.1"\n')
    country_db, asn_db = write_geoip(tmp_path)
    directory = tmp_path / "node"
    init = runner.invoke(
        app,
        ["init", "--dir", str(directory), "--node-id", "node-de", "--country", "DE",
         "--function-url", f"http://127.0.0.1:{free_port()}",
         "--seed", f"http://site.test:{site_port}/", "--lab", str(lab),
         "--country-db", str(country_db), "--asn-db", str(asn_db)],
    )  # fmt: skip
    assert init.exit_code == 0, init.output
    return directory / "node.toml"


def test_serve_exits_78_on_a_missing_geoip_database(tmp_path: Path) -> None:
    config = make_node(tmp_path, free_port())
    document = tomllib.loads(config.read_text(encoding="utf-8"))
    missing = tmp_path / "gone.mmdb"
    document["geoip"]["country_db"] = str(missing)
    config.write_text(tomli_w.dumps(document), encoding="utf-8")
    # A real process: a serve that did not stop at start would run until the timeout.
    run = subprocess.run(
        [sys.executable, "-m", "libra", "node", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert run.returncode == EX_CONFIG == 78, run.stdout + run.stderr
    assert f"cannot open the country database {missing}" in run.stderr
    assert "Traceback" not in run.stderr and "serving node" not in run.stdout


async def test_scheduled_cycles_share_one_attributor_and_say_why_pages_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("apscheduler")
    from node import service
    from node.scheduler import CRAWL_JOB, build_scheduler

    site_port = free_port()
    settings = load_settings(make_node(tmp_path, site_port))
    engine = service.open_engine(settings)

    def no_second_open(_settings: object) -> None:
        raise AssertionError("a scheduled cycle opened the GeoIP databases again")

    attributor = service.open_attributor(settings)
    monkeypatch.setattr(service, "open_attributor", no_second_open)
    console = Console(record=True, width=300)
    job = build_scheduler(settings, engine, console, attributor).get_job(CRAWL_JOB)
    try:
        await job.func()
        await job.func()
        # Still open after both cycles: 127.0.1.7 is Hoster A (DE) in the test databases.
        assert attributor.lookup("127.0.1.7").country == "DE"
    finally:
        attributor.close()
        engine.dispose()
    text = console.export_text()
    for cycle in (1, 2):
        assert f"crawl cycle {cycle} done: 0 pages (1 failed: blocked_destination 1)" in text
        assert f"crawl cycle {cycle} could fetch no page" in text
