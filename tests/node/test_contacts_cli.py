"""`libra node contacts ...` and `libra node retention ...` on a node made by `libra node init`
(lab mode, RDAP fixtures on loopback)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from node import audit
from node.cli.main import app
from node.config import load_settings
from node.service import open_engine
from tests.node.rdap_fake import FakeRdap, fake_rdap

runner = CliRunner()

TABLE = """
[[hoster]]
id = "hoster-a"
name = "Hoster A"
abuse_emails = ["abuse@hoster-a.example"]
asns = [64500]
"""


def node_dir(tmp_path: Path) -> list[str]:
    directory = tmp_path / "node"
    lab = tmp_path / "lab.toml"
    lab.write_text("")
    result = runner.invoke(
        app,
        [
            "init",
            "--dir",
            str(directory),
            "--node-id",
            "n-test",
            "--country",
            "DE",
            "--lab",
            str(lab),
        ],
    )
    assert result.exit_code == 0, result.output
    (directory / "operators.toml").write_text(TABLE)
    with (directory / "node.toml").open("a") as config:
        config.write('\n[attribution]\noperators_file = "operators.toml"\n')
    return ["--config", str(directory / "node.toml")]


def invoke(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})  # whole table cells
    assert result.exit_code == code, result.output
    return result.output


def bootstrap(server: FakeRdap, tmp_path: Path, config: list[str]) -> None:
    saved = server.write_bootstrap(tmp_path / "saved-bootstrap.json")
    out = invoke("contacts", "bootstrap", "--from-file", str(saved), *config)
    assert "rdap-bootstrap.json" in out


def test_resolve_show_refresh_and_audit(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    with fake_rdap() as server:
        # Lab mode never goes online for the bootstrap data.
        assert "lab mode" in invoke("contacts", "bootstrap", *config, code=2)
        bootstrap(server, tmp_path, config)
        out = invoke(
            "contacts",
            "resolve",
            "--asn",
            "64500",
            "--reason",
            "case 17",
            "--actor",
            "kim",
            *config,
        )
        assert "source: operator-table (hoster-a)" in out
        assert "e-mail: abuse@hoster-a.example" in out
        out = invoke("contacts", "resolve", "--ip", "192.0.2.7", *config)
        assert "source: rdap (EXH-ABUSE-TEST)" in out and "abuse@hosting.example" in out
        out = invoke("contacts", "resolve", "--ip", "198.51.100.1", *config, code=1)
        assert "no abuse contact" in out
        assert server.requests == ["/rdap/ip/192.0.2.7", "/rdap/ip/198.51.100.1"]

        out = invoke("contacts", "show", "--reason", "review", *config)
        assert "hoster-a" in out and "ip:192.0.2.7" in out and "EXH-ABUSE-TEST" in out

        # Only the expired answers by default (none yet), every one with --all.
        assert "refreshed 0 of 0" in invoke("contacts", "refresh", *config)
        assert "refreshed 2 of 2" in invoke("contacts", "refresh", "--all", *config)
        assert len(server.requests) == 4
        invoke("contacts", "refresh", "bogus", *config, code=2)

    engine = open_engine(load_settings(Path(config[1])))
    resolves = audit.entries(engine, "contacts.resolve")
    assert [e.subject for e in resolves] == ["ip:198.51.100.1", "ip:192.0.2.7", "asn:64500"]
    assert (resolves[-1].actor, resolves[-1].reason) == ("kim", "case 17")
    assert resolves[-1].details == {"source": "operator-table", "reference": "hoster-a"}
    assert [e.reason for e in audit.entries(engine, "contacts.show")] == ["review"]
    assert len(audit.entries(engine, "contacts.rdap_query")) == 4


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    assert "at least one of" in invoke("contacts", "resolve", *config, code=2)
    assert "not an IP address" in invoke(
        "contacts", "resolve", "--ip", "300.1.1.1", *config, code=2
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"timestamp": 1}')
    out = invoke("contacts", "bootstrap", "--from-file", str(broken), *config, code=1)
    assert "invalid RDAP bootstrap data" in out
    (tmp_path / "node" / "operators.toml").write_text('[[hoster]]\nid = "x"\nname = "X"\n')
    out = invoke("contacts", "show", *config, code=2)
    assert "hoster #1 (id 'x'): matches nothing" in out


def test_retention_cli(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    out = invoke("retention", "run", "--dry-run", *config)
    assert "dry run" in out and "sightings" in out and "365 days" in out
    out = invoke("retention", "run", "--only", "sightings", "--reason", "test", *config)
    assert "sightings" in out and "unmatched_images" not in out
    assert "unknown record type" in invoke("retention", "run", "--only", "all", *config, code=2)
    assert "notices" in invoke("retention", "rules", *config)


def test_list_consultations_are_audited(tmp_path: Path) -> None:
    config = node_dir(tmp_path)
    invoke("list", "show", "--reason", "weekly check", "--actor", "ana", *config)
    queries = tmp_path / "q.txt"
    queries.write_text("md5 " + "ab" * 16 + "\n")
    invoke("list", "match", str(queries), "--reason", "case 9", *config)
    out = tmp_path / "export.csv"
    invoke("list", "export", str(out), "--format", "csv", "--actor", "ana", *config)
    engine = open_engine(load_settings(Path(config[1])))
    events = {e.action: e for e in audit.entries(engine, "list.")}
    assert (events["list.show"].actor, events["list.show"].reason) == ("ana", "weekly check")
    assert (events["list.match"].subject, events["list.match"].reason) == ("q.txt", "case 9")
    assert "ab" * 16 not in str(events["list.match"].details)  # the queried value is not logged
    assert events["list.export"].actor == "ana"
