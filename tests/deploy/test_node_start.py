"""deploy/node_start.py, the node image's start-up checks: a node without its GeoIP databases,
a writable data volume or readable keys stops at once with one clear line (exit 78) instead of
running and recording every sighting as ZZ / AS0; a node with them becomes `libra node ...`."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPSet

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "node_start.py"
NOBODY = 65534
EX_CONFIG = 78


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("node_start", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


node_start = _load()


def write_mmdb(path: Path, database_type: str, record: dict[str, Any]) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type)
    writer.insert_network(IPSet(["127.0.1.0/24"]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any uid may read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="libra-node-start-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for inner, _, files in os.walk(path):  # undo _not_mine for a non-root run
            for name in [inner, *(os.path.join(inner, f) for f in files)]:
                os.chmod(name, 0o700)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def node_dir(shared_dir: Path) -> Path:
    """A node as docker-compose.yml lays it out: data volume, key secrets, GeoIP mount."""
    for name in ("data", "secrets", "geoip"):
        (shared_dir / name).mkdir(mode=0o755)
    for key in ("signing", "federation", "list", "function"):
        (shared_dir / "secrets" / key).write_text("a2V5\n")
    write_mmdb(
        shared_dir / "geoip" / "country.mmdb",
        "GeoLite2-Country",
        {"country": {"iso_code": "DE"}},
    )
    write_mmdb(
        shared_dir / "geoip" / "asn.mmdb",
        "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
        {
            "autonomous_system_number": MmdbU32(64500),
            "autonomous_system_organization": "Hoster A",
        },
    )
    write_config(shared_dir)
    return shared_dir


def write_config(directory: Path, geoip: str | None = None, extra: str = "") -> Path:
    if geoip is None:
        geoip = 'country_db = "geoip/country.mmdb"\nasn_db = "geoip/asn.mmdb"\n'
    path = directory / "node.toml"
    path.write_text(
        'node_id = "node-a"\ncountry = "DE"\ndata_dir = "data"\n'
        'signing_key_file = "secrets/signing"\nfederation_key_file = "secrets/federation"\n'
        'list_key_file = "secrets/list"\nfunction_key_file = "secrets/function"\n'
        f"{extra}\n[geoip]\n{geoip}"
    )
    path.chmod(0o644)
    return path


ALL = ["--check=data", "--check=keys", "--check=geoip"]


def check(directory: Path, capsys: pytest.CaptureFixture[str], *checks: str) -> str:
    """Run the checks in-process; the error line ('' when they pass)."""
    args = [f"--config={directory / 'node.toml'}", *(checks or ALL), "--only-check"]
    status = node_start.main(args)
    err = capsys.readouterr().err
    assert status == (0 if not err else EX_CONFIG), (status, err)
    return err


def test_a_complete_node_passes_every_check(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(node_dir, capsys) == ""


def test_missing_geoip_database_stops_the_node(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (node_dir / "geoip" / "asn.mmdb").unlink()
    err = check(node_dir, capsys)
    assert "cannot start" in err and str(node_dir / "geoip" / "asn.mmdb") in err
    assert "missing" in err and "geoip.asn_db" in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


def test_unset_geoip_stops_the_node(node_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(node_dir, geoip='asn_db = "geoip/asn.mmdb"\n')
    err = check(node_dir, capsys)
    assert "geoip.country_db is not set" in err and "ZZ" in err


def test_swapped_geoip_databases_stop_the_node(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(node_dir, geoip='country_db = "geoip/asn.mmdb"\nasn_db = "geoip/country.mmdb"\n')
    assert "swapped" in check(node_dir, capsys)


def test_a_file_that_is_no_maxmind_database_stops_the_node(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (node_dir / "geoip" / "country.mmdb").write_bytes(b"<html>download failed</html>" * 10)
    assert "cannot be read" in check(node_dir, capsys)


def test_a_city_database_serves_for_the_country(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_mmdb(
        node_dir / "geoip" / "country.mmdb", "GeoLite2-City", {"country": {"iso_code": "DE"}}
    )
    assert check(node_dir, capsys) == ""


def test_missing_data_directory_stops_the_node(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (node_dir / "data").rmdir()
    assert "does not exist" in check(node_dir, capsys, "--check=data")


def test_empty_key_file_stops_the_node(node_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (node_dir / "secrets" / "list").write_text("\n")
    assert "is empty" in check(node_dir, capsys, "--check=keys")


def test_a_broken_config_stops_the_node(node_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(node_dir, extra="dispatch = 5")
    err = check(node_dir, capsys, "--check=data")
    assert "invalid node settings" in err and "dispatch" in err


def _not_mine(path: Path, mode: int) -> None:
    """Make ``path`` another user's, as an engine-made mount point or an operator's 0600 secret
    is to uid 10001 in the container. Root is a stranger too once _run drops its override."""
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
        path.chmod(mode)
    else:
        path.chmod(0o500 if path.is_dir() else 0o000)


def _run(args: list[str], path_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path_dir is not None:
        env["PATH"] = f"{path_dir}:{env['PATH']}"
    prefix: list[str] = []
    if os.geteuid() == 0:
        # Root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH obeys file modes like any user.
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "setpriv (util-linux) is needed to drop root's overrides"
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, "--bounding-set", caps, "--inh-caps", caps]
    return subprocess.run(
        [*prefix, sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_a_data_volume_the_user_cannot_write_stops_the_node(node_dir: Path) -> None:
    data = node_dir / "data"
    _not_mine(data, 0o755)
    result = _run([f"--config={node_dir / 'node.toml'}", "--check=data", "--only-check"])
    assert result.returncode == EX_CONFIG, result.stderr
    assert f"data_dir {data} is not writable by uid" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_key_secret_the_user_cannot_read_stops_the_node(node_dir: Path) -> None:
    key = node_dir / "secrets" / "federation"
    _not_mine(key, 0o600)
    result = _run([f"--config={node_dir / 'node.toml'}", "--check=keys", "--only-check"])
    assert result.returncode == EX_CONFIG, result.stderr
    assert f"cannot read key file {key}" in result.stderr and "chown 10001" in result.stderr


def test_the_same_files_owned_by_the_user_pass(node_dir: Path) -> None:
    result = _run([f"--config={node_dir / 'node.toml'}", *ALL, "--only-check"])
    assert result.returncode == 0, result.stderr


def fake_libra(directory: Path, body: str) -> Path:
    """A `libra` on PATH that records how node_start ran it."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(mode=0o755)
    script = bin_dir / "libra"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def test_after_the_checks_the_node_command_replaces_the_starter(node_dir: Path) -> None:
    bin_dir = fake_libra(node_dir, 'echo "pid $$ args $*"')
    config = node_dir / "node.toml"
    result = _run([f"--config={config}", *ALL, "serve"], bin_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" args ")[1].strip() == f"node serve --config {config}"


def test_nothing_runs_when_a_check_fails(node_dir: Path) -> None:
    bin_dir = fake_libra(node_dir, "echo ran")
    (node_dir / "geoip" / "country.mmdb").unlink()
    result = _run([f"--config={node_dir / 'node.toml'}", *ALL, "serve"], bin_dir)
    assert result.returncode == EX_CONFIG and "ran" not in result.stdout


def test_repeat_runs_the_worker_again_and_stops_on_sigterm(node_dir: Path) -> None:
    runs = node_dir / "runs"
    runs.touch(mode=0o666)
    runs.chmod(0o666)
    bin_dir = fake_libra(node_dir, f'echo "$*" >> {runs}')
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    config = node_dir / "node.toml"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), f"--config={config}", "--repeat=0.05", "crawl-worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A backstop against a hang, not a speed check.
        deadline = time.monotonic() + 300
        while len(runs.read_text().splitlines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=300) == 0
    finally:
        if process.poll() is None:
            process.kill()
    lines = runs.read_text().splitlines()
    assert len(lines) >= 3 and set(lines) == {f"node crawl-worker --config {config}"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_check_names_the_frontier_that_does_not_answer(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    write_config(node_dir, extra=f'\n[crawl]\nfrontier = "redis"\nredis_url = "{url}"\n')
    err = check(node_dir, capsys, "--check=redis")
    assert url in err and "does not answer" in err


def test_redis_check_needs_the_redis_frontier(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 'crawl.frontier = "redis"' in check(node_dir, capsys, "--check=redis")


def test_redis_check_passes_with_a_running_redis(
    node_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no Redis on 127.0.0.1:6379")
    write_config(
        node_dir, extra='\n[crawl]\nfrontier = "redis"\nredis_url = "redis://127.0.0.1:6379/0"\n'
    )
    assert check(node_dir, capsys, "--check=redis") == ""


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        node_start.main(["--config=x.toml"])
    assert exited.value.code == 2
    assert "give the `libra node` command" in capsys.readouterr().err
