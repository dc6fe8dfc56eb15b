"""`libra node candidates ...` on a node made by `libra node init`: the queue, verdicts with the
persisted index kept current, flags, held matches; exit codes; the audit actor."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node import audit
from node.cli.candidates import CANDIDATE_STATES, HELD_STATES
from node.cli.main import app
from node.config import DiscoverySettings, load_settings
from node.discovery import models
from node.discovery.flood import hold_floods
from node.keys.list_encryption import load_list_key
from node.matching.index import persist
from node.service import open_engine
from tests.node.candidates_kit import add_candidate, add_cycle, add_entries, add_sightings
from tests.node.conftest import flip_bits, image_hashes, rand_hex
from tests.node.test_cli import init_node

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)


def test_help_names_equal_the_model_states() -> None:
    assert CANDIDATE_STATES == models.CANDIDATE_STATES
    assert HELD_STATES == models.HELD_STATES


def assert_fits(output: str, width: int) -> None:
    wide = [line for line in output.splitlines() if len(line) > width]
    assert wide == []


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["candidates", *args])
    return result.exit_code, result.output


def test_queue_and_verdicts(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    config = ["-c", str(directory / "node.toml")]
    settings = load_settings(directory / "node.toml")
    engine = open_engine(settings)
    key = load_list_key(settings.list_key_path)
    rng = random.Random(50)
    cycle = add_cycle(engine)
    a = add_candidate(engine, cycle, rng, score=80, host="a-very-long-host-name.example.test")
    b = add_candidate(engine, cycle, rng, score=55, host="b.test", hoster="Hoster B")
    persist.current(engine, settings.index_dir, key)

    code, out = _run("list", *config, "--actor", "ana")
    assert code == 0, out
    assert out.index(f"{a.id} ") < out.index(f"{b.id} ") and "Hoster B" in out
    assert_fits(out, 80)
    code, out = _run("list", "--json", "--hoster", "Hoster B", *config)
    assert code == 0 and [r["id"] for r in json.loads(out)["candidates"]] == [b.id]
    code, out = _run("list", "--state", "maybe", *config)
    assert code == 2 and "--state must be one of" in out

    code, out = _run("show", str(a.id), *config)
    assert code == 0 and a.url in out and "same_page" in out
    assert a.sha256 not in out and (a.pdq or "") not in out
    code, out = _run("show", str(a.id), "--hashes", "--json", *config)
    assert code == 0 and json.loads(out)["hashes"]["sha256"] == a.sha256
    code, out = _run("show", "999", *config)
    assert code == 1 and "does not exist" in out
    consults = audit.entries(engine, "candidate.consult")
    assert consults[-1].actor == "ana" and consults[0].details == {"hashes": True}

    code, out = _run("confirm", str(a.id), "--category", "A1", "--actor", "ana", *config)
    assert code == 0, out
    assert "confirmed" in out and "4 new entries" in out
    # The persisted index was brought up to date in place: current, and it matches the image.
    loaded = persist.load(settings.index_dir, key)
    assert loaded is not None and loaded[1] == persist.db_stamp(engine)
    assert loaded[0].best(image_hashes(rng, sha256=a.sha256)) is not None
    code, out = _run("confirm", str(a.id), "--category", "A1", *config)
    assert code == 1 and "already confirmed by ana" in out

    code, out = _run("reject", str(b.id), *config)
    assert code == 2  # --reason is required
    code, out = _run("reject", str(b.id), "--reason", "a cat", *config)
    assert code == 0 and "4 hashes added to the negative list" in out
    assert audit.entries(engine, "candidate.reject")[0].reason == "a cat"


def test_flags_disable_enable_and_held(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    config = ["-c", str(directory / "node.toml")]
    settings = load_settings(directory / "node.toml")
    engine = open_engine(settings)
    key = load_list_key(settings.list_key_path)
    rng = random.Random(51)
    pdq = rand_hex(rng, 256)
    (entry,) = add_entries(engine, "pdq", [pdq])
    cycle = add_cycle(engine)
    c = add_candidate(engine, cycle, rng, pdq=flip_bits(pdq, [5, 6]))
    near = image_hashes(rng, pdq=flip_bits(pdq, [9]))

    # A rejected image that matches the entry (PDQ, found through the persisted index).
    code, out = _run("reject", str(c.id), "--reason", "benign", *config)
    assert code == 0 and f"list entry {entry} matched 1 rejected image" in out
    code, out = _run("flags", "--all", "--json", *config)
    assert json.loads(out)["flags"][0]["rejected_hits"] == 1
    code, out = _run("flags", *config)
    assert code == 0 and "no flagged entries" in out

    persist.current(engine, settings.index_dir, key)
    code, out = _run("disable-entry", str(entry), *config)
    assert code == 2
    code, out = _run("disable-entry", str(entry), "--reason", "collides", *config)
    assert code == 0 and "never matched" in out
    loaded = persist.load(settings.index_dir, key)
    assert loaded is not None and loaded[1] == persist.db_stamp(engine)
    assert loaded[0].best(near) is None
    code, out = _run("flags", *config)
    assert code == 0 and str(entry) in out and "pdq" in out
    assert_fits(out, 80)
    code, out = _run("disable-entry", str(entry), "--reason", "again", *config)
    assert code == 1 and "already disabled" in out
    code, out = _run("enable-entry", str(entry), "--reason", "fixed", *config)
    assert code == 0
    loaded = persist.load(settings.index_dir, key)
    assert loaded is not None and loaded[0].best(near) is not None

    add_sightings(engine, cycle, entry, 60)
    hold_floods(engine, cycle, DiscoverySettings())
    code, out = _run("held", *config)
    assert code == 0 and "60" in out and "matches in cycle" in out
    code, out = _run("held", "--json", *config)
    assert json.loads(out)["held"][0]["entry_id"] == entry
    code, out = _run("release", *config)
    assert code == 2  # neither an entry nor sightings
    code, out = _run("discard", str(entry), *config)
    assert code == 2  # a discard needs a reason
    code, out = _run("discard", str(entry), "--reason", "collision", "--actor", "bob", *config)
    assert code == 0 and "60 sighting(s) discarded" in out
    code, out = _run("release", str(entry), *config)
    assert code == 1 and "no held sightings" in out
    assert audit.entries(engine, "sighting.discard")[0].actor == "bob"
