"""docker-compose.yml, checked for what would make it start and run as intended, not only for
its syntax: every writable mount is a directory the image gives to the service's user, the
start order (postgres -> migrate -> coordinator -> registration -> nodes), the networks, the
secrets and configs deploy/make_secrets.py makes, the GeoIP mount and node-a's crawl worker.
No Docker engine runs here; the checks read the files (tests/deploy/compose_model.py)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node.config import load_settings as load_node_settings
from node.keys.files import load_federation_key, load_signing_key
from node.keys.list_encryption import load_list_key
from protocol.keys import NodeKey
from tests.deploy.compose_model import (
    COMPOSE,
    REPO,
    SERVICES,
    dependencies,
    image_stage,
    mounts,
    names,
    reachable,
)
from worker_function.settings import load_settings as load_function_settings

LIBRA = {
    "coordinator-migrate",
    "coordinator",
    "coordinator-register",
    "function-a",
    "function-b",
    "node-a",
    "node-a-worker",
    "node-b",
}
NODES = ("node-a", "node-b")
FUNCTIONS = ("function-a", "function-b")
ONE_SHOT = {"coordinator-migrate", "coordinator-register"}
COORDINATOR_ROLE = {"coordinator", "coordinator-migrate", "coordinator-register"}
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|SEED|_KEY$", re.IGNORECASE)
# Official images whose entry point runs as root, gives its data directory to the service
# user, then drops privileges: their volume targets need no directory of ours.
OFFICIAL_DATA_DIRS = {"postgres": "/var/lib/postgresql/data", "redis": "/data"}
GEOIP_TARGET = "/var/lib/libra/geoip"


def _seconds(duration: str) -> float:
    """A compose duration such as ``15s``, ``1m30s`` or ``500ms`` in seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_the_services_of_the_issue_are_all_there() -> None:
    assert set(SERVICES) == LIBRA | {"postgres", "redis"}
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")


@pytest.mark.parametrize("name", sorted(LIBRA))
def test_libra_images_are_built_from_the_repo_as_non_root(name: str) -> None:
    service = SERVICES[name]
    stage = image_stage(service)
    assert stage is not None, name
    assert stage.uid() not in ("0", "root"), (name, stage.user)
    assert stage.uid() in stage.users.values(), "USER names a user the image creates"
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert "/tmp:size=64m,mode=1777" in service["tmpfs"]  # scratch, writable by any uid
    # Services built from one target share one image tag, and one tag has one target.
    for other_name, other in SERVICES.items():
        if other.get("image") == service["image"]:
            assert other["build"] == service["build"], (name, other_name)


@pytest.mark.parametrize("name", sorted(LIBRA))
def test_every_writable_mount_is_a_directory_the_image_gives_to_the_service_user(
    name: str,
) -> None:
    # A named volume starts as a copy of the image's directory, owner and mode included; a
    # directory the image lacks is made by the engine as root, and uid 10001 cannot write it.
    stage = image_stage(SERVICES[name])
    assert stage is not None
    for mount in mounts(SERVICES[name]):
        assert mount.target in stage.dirs, f"{name}: {mount.target} is not made by the image"
        made = stage.dirs[mount.target]
        if not mount.read_only:
            assert made.owner == stage.uid(), (name, mount.target, made)
        else:  # read by the service user: every parent must let it through
            assert made.mode is None or made.mode & 0o005 == 0o005, (name, mount.target)
        for parent in Path(mount.target).parents:
            entry = stage.dirs.get(str(parent))
            if entry is not None and entry.owner != stage.uid():
                assert entry.mode is None or entry.mode & 0o001, (name, parent)


def test_the_node_data_directory_is_where_the_node_settings_put_it() -> None:
    for node in NODES:
        (config,) = SERVICES[node]["configs"]
        settings = load_node_settings(REPO / COMPOSE["configs"][config["source"]]["file"])
        data = {m.target: m for m in mounts(SERVICES[node])}[str(settings.data_dir)]
        assert data.kind == "volume" and not data.read_only
    coordinator = image_stage(SERVICES["coordinator"])
    assert coordinator is not None
    data_dir = coordinator.env["LIBRA_COORDINATOR_DATA_DIR"]
    assert any(m.target == data_dir for m in mounts(SERVICES["coordinator"]))


def test_registry_images_keep_their_data_in_their_own_data_directory() -> None:
    for name, target in OFFICIAL_DATA_DIRS.items():
        (mount,) = mounts(SERVICES[name])
        assert mount.kind == "volume" and mount.target == target
        assert "user" not in SERVICES[name]  # the entry point must start as root to chown it


def test_start_order_postgres_migrate_coordinator_registration_nodes() -> None:
    assert dependencies("coordinator-migrate") == {"postgres"}
    assert {"postgres", "coordinator-migrate"} <= dependencies("coordinator")
    assert {"coordinator", "coordinator-migrate"} <= dependencies("coordinator-register")
    for node in NODES:
        assert {"coordinator-register", "coordinator", "postgres"} <= dependencies(node)
        condition = SERVICES[node]["depends_on"]["coordinator-register"]["condition"]
        assert condition == "service_completed_successfully"
        function = node.replace("node", "function")
        assert SERVICES[node]["depends_on"][function] == {"condition": "service_healthy"}
    assert "node-a" in dependencies("node-a-worker")
    assert SERVICES["node-a"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    for name in SERVICES:
        assert name not in dependencies(name), f"{name} depends on itself"


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in SERVICES.items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            assert check.get("disable") is True
            continue
        assert service["restart"] == "unless-stopped", name
        assert check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES
            expected = "service_completed_successfully" if dependency in ONE_SHOT else None
            assert condition["condition"] in (expected or "service_healthy",), (name, dependency)


def test_registration_registers_each_node_from_its_own_settings_and_public_key() -> None:
    service = SERVICES["coordinator-register"]
    targets = {c["target"]: c["source"] for c in service["configs"]}
    pairs = [a for a in service["command"] if "=" in a]
    registered = set()
    for pair in pairs:
        config_target, key_target = pair.split("=")
        config = COMPOSE["configs"][targets[config_target]]["file"]
        node_id = load_node_settings(REPO / config).node_id
        registered.add(node_id)
        # The node's own settings file is the one the node runs with.
        assert {c["source"] for c in SERVICES[node_id]["configs"]} == {targets[config_target]}
        assert COMPOSE["configs"][targets[key_target]]["file"].endswith(f"/node_{node_id[-1]}.pub")
    assert registered == set(NODES)
    # The job sees no private key: only the database password file.
    assert names(service["secrets"]) == {"coordinator_pgpass"}


def test_secrets_come_from_files_and_nothing_secret_is_inline() -> None:
    declared = COMPOSE["secrets"]
    for name, secret in declared.items():
        assert set(secret) == {"file"}, name
        assert secret["file"].startswith("./deploy/secrets/"), name
    ignore = (REPO / "deploy" / "secrets" / ".gitignore").read_text().split()
    assert ignore[0] == "*"  # the secret files are never committed
    used = set()
    for name, service in SERVICES.items():
        used |= names(service.get("secrets"))
        assert names(service.get("secrets")) <= set(declared), name
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use the mapping form"
        for variable, value in environment.items():
            text = str(value)
            assert not (SECRET_WORDS.search(variable) and not variable.endswith("_FILE")), variable
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", text), f"{variable}: password in URL"
            assert not re.fullmatch(r"[A-Za-z0-9+/]{40,}={0,2}", text), f"{variable}: a key?"
            if text.startswith("/run/secrets/"):
                assert text.removeprefix("/run/secrets/") in names(service.get("secrets"))
    assert used == set(declared), "a declared secret is used by no service"
    configs = set().union(*(names(s.get("configs")) for s in SERVICES.values()))
    assert configs == set(COMPOSE["configs"]), "a declared config is used by no service"


def test_nodes_share_no_volume_secret_config_or_private_network() -> None:
    a, b = SERVICES["node-a"], SERVICES["node-b"]
    own = {n: {m.source for m in mounts(SERVICES[n]) if m.target != GEOIP_TARGET} for n in NODES}
    assert own["node-a"] and not own["node-a"] & own["node-b"]
    assert not names(a.get("secrets")) & names(b.get("secrets"))
    assert not names(a.get("configs")) & names(b.get("configs"))
    assert names(a["networks"]) & names(b["networks"]) == {"federation"}
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for mount in mounts(service):
            if mount.kind == "bind":  # only the operator's GeoIP files, read-only
                assert (mount.source, mount.target) == ("./deploy/geoip", GEOIP_TARGET), name
                assert mount.read_only, name
            else:
                assert mount.source in declared, name
    for node in NODES:
        targets = {m.target: m for m in mounts(SERVICES[node])}
        assert not targets["/var/lib/libra/node"].read_only  # data and index
        assert targets["/var/lib/libra/lists"].read_only  # its own list volume


@pytest.mark.parametrize("node", NODES)
def test_nodes_get_the_operators_geoip_databases(node: str) -> None:
    (config,) = SERVICES[node]["configs"]
    settings = load_node_settings(REPO / COMPOSE["configs"][config["source"]]["file"])
    geoip = next(m for m in mounts(SERVICES[node]) if m.target == GEOIP_TARGET)
    assert geoip.read_only
    long_form = next(v for v in SERVICES[node]["volumes"] if isinstance(v, dict))
    assert long_form["bind"]["create_host_path"] is False  # a missing folder fails at once
    for path in (settings.geoip.country_db, settings.geoip.asn_db):
        assert path is not None and path.parent == Path(GEOIP_TARGET), path
        assert (REPO / "deploy" / "geoip" / path.name).parent.is_dir()
    # The node refuses to start without them (deploy/node_start.py --check=geoip).
    assert "--check=geoip" in SERVICES[node]["command"]
    ignored = (REPO / "deploy" / "geoip" / ".gitignore").read_text().split()
    assert "*.mmdb" in ignored  # licensed files are never committed


def test_networks_keep_each_role_to_what_it_needs() -> None:
    networks = {name: names(s.get("networks")) for name, s in SERVICES.items()}
    declared = COMPOSE["networks"]
    for name, joined in networks.items():
        assert joined and joined <= set(declared), name
    used = set().union(*networks.values())
    assert used == set(declared), "a declared network is used by no service"
    # Only the coordinator and its one-shot jobs reach PostgreSQL.
    assert {n for n in SERVICES if reachable(n, "postgres")} - {"postgres"} == COORDINATOR_ROLE
    for function in FUNCTIONS:
        # A function shares a network with its own node only: never the coordinator or PostgreSQL.
        peers = {other for other in SERVICES if other != function and reachable(function, other)}
        assert peers == {function.replace("function", "node")}, (function, peers)
    assert {n for n in SERVICES if reachable(n, "redis")} == {"redis", "node-a", "node-a-worker"}
    # The networks that join services are internal; the rest are one service's way out.
    for network, options in declared.items():
        members = {n for n, joined in networks.items() if network in joined}
        if len(members) > 1:
            assert (options or {}).get("internal") is True, (network, members)
        else:
            assert not (options or {}).get("internal"), network
    for name in ("postgres", "redis", "coordinator-migrate", "coordinator-register"):
        assert all(declared[n].get("internal") for n in networks[name]), f"{name}: no way out"
    assert "ports" not in SERVICES["postgres"] and "ports" not in SERVICES["redis"]
    # A published port needs a network that is not internal.
    assert not all(declared[n].get("internal") for n in networks["coordinator"])
    for name, service in SERVICES.items():
        for published in service.get("ports", []):
            assert name == "coordinator", name
            assert published.startswith("127.0.0.1:"), "the TLS proxy publishes, not the app"


@pytest.mark.parametrize("node", NODES)
def test_node_configs_match_the_compose_file(node: str) -> None:
    service = SERVICES[node]
    (config,) = service["configs"]
    assert config["target"] == "/etc/libra/node.toml"
    assert "--config=/etc/libra/node.toml" in service["command"]
    assert service["command"][-1] == "serve"
    settings = load_node_settings(REPO / COMPOSE["configs"][config["source"]]["file"])
    assert settings.node_id == node
    mounted = {f"/run/secrets/{s}" for s in names(service["secrets"])}
    for path in (
        settings.signing_key_path,
        settings.federation_key_path,
        settings.list_key_path,
        settings.function_key_file,
    ):
        assert str(path) in mounted, path
    function = settings.function_url.split("//")[1].split(":")[0]
    assert function in FUNCTIONS and function.endswith(node[-1])
    assert settings.coordinator_url == "http://coordinator:8700"
    assert reachable(node, "coordinator") and reachable(node, function)
    listen = settings.telemetry.metrics_listen
    assert listen is not None and listen.split(":")[-1] in " ".join(service["healthcheck"]["test"])
    if settings.crawl.frontier == "redis":
        redis_host = settings.crawl.redis_url.split("//")[1].split(":")[0]
        assert redis_host in SERVICES and reachable(node, redis_host)


def test_redis_is_worked_by_a_crawl_worker_of_the_node_that_uses_it() -> None:
    users = [
        n
        for n in NODES
        if load_node_settings(
            REPO / COMPOSE["configs"][SERVICES[n]["configs"][0]["source"]]["file"]
        ).crawl.frontier
        == "redis"
    ]
    assert users == ["node-a"]
    worker = SERVICES["node-a-worker"]
    assert worker["configs"] == SERVICES["node-a"]["configs"]  # the same node, same frontier
    command = worker["command"]
    assert "--check=redis" in command
    at = command.index("crawl-worker")
    assert "--forever" in command[at:]  # waits for the next cycle's work instead of exiting
    grace = next(a for a in command[at:] if a.startswith("--stop-grace="))
    # docker stop sends SIGTERM, then SIGKILL after stop_grace_period: jobs in flight must
    # finish (or go back to the frontier) before that.
    assert float(grace.split("=", 1)[1]) + 5 <= _seconds(worker["stop_grace_period"])
    assert worker.get("init") is True  # signals reach the worker
    assert "secrets" not in worker and "volumes" not in worker  # needs no key or state
    assert not reachable("node-a-worker", "coordinator")
    assert not reachable("node-a-worker", "function-a")


def _make_secrets() -> Any:
    spec = importlib.util.spec_from_file_location("make_secrets", REPO / "deploy/make_secrets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_secrets_creates_every_file_compose_reads(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    made = _make_secrets().make(directory)
    secrets = {Path(s["file"]).name for s in COMPOSE["secrets"].values()}
    public = {
        Path(c["file"]).name
        for c in COMPOSE["configs"].values()
        if c["file"].startswith("./deploy/secrets/")
    }
    assert public == {"node_a.pub", "node_b.pub"}
    assert set(made) == secrets | public
    for name in secrets:
        mode = stat.S_IMODE((directory / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    wanted = secrets | public
    before = {name: (directory / name).read_bytes() for name in wanted}
    assert _make_secrets().make(directory) == []  # never overwrites: no accidental rotation
    assert before == {name: (directory / name).read_bytes() for name in wanted}
    for node in ("a", "b"):
        signing = load_signing_key(directory / f"node_{node}_signing_key")
        assert before[f"node_{node}.pub"].decode().strip() == signing.public_key_b64
        load_federation_key(directory / f"node_{node}_federation_key")
        load_list_key(directory / f"node_{node}_list_key", env={})
        function = load_function_settings(directory / f"function_{node}.toml")
        seed = (directory / f"node_{node}_function_key").read_text().strip()
        assert function.authorized_keys == {
            f"node-{node}": NodeKey.from_seed_b64(seed).public_key_b64
        }
    assert before["node_a_federation_key"] == before["node_b_federation_key"]
    password = before["postgres_password"].decode().strip()
    assert before["coordinator_pgpass"].decode().strip().endswith(f":libra:libra:{password}")


def test_make_secrets_rewrites_a_public_key_that_no_longer_matches(tmp_path: Path) -> None:
    make = _make_secrets().make
    make(tmp_path)
    (tmp_path / "node_a_signing_key").unlink()  # the operator makes a new key
    assert set(make(tmp_path)) == {"node_a_signing_key", "node_a.pub"}
    signing = load_signing_key(tmp_path / "node_a_signing_key")
    assert (tmp_path / "node_a.pub").read_text().strip() == signing.public_key_b64
    assert stat.S_IMODE((tmp_path / "node_a.pub").stat().st_mode) == 0o644


def test_function_services_read_their_config_from_a_secret() -> None:
    for function in FUNCTIONS:
        command = SERVICES[function]["command"]
        path = command[command.index("--config") + 1]
        assert path.removeprefix("/run/secrets/") in names(SERVICES[function]["secrets"])
        assert SERVICES[function]["build"]["target"] == "function"  # not the Lambda target


def test_every_file_a_command_runs_is_in_the_services_image() -> None:
    for name in LIBRA:
        stage = image_stage(SERVICES[name])
        assert stage is not None
        copied = {c.dest for c in stage.copies}
        commands = [SERVICES[name].get("command") or stage.cmd or []]
        commands.append(SERVICES[name].get("healthcheck", {}).get("test", [])[1:])
        for command in commands:
            for word in command:
                if word.startswith("/opt/libra/deploy/"):
                    assert word in copied, (name, word)
            if command and command[0] not in ("libra", "python"):
                pytest.fail(f"{name}: runs {command[0]}, not a program of the image")


def test_the_compose_specification_schema_accepts_the_file() -> None:
    # check-jsonschema ships the Compose Specification's JSON schema (vendor.compose-spec).
    checker = shutil.which("check-jsonschema") or str(
        Path(sys.executable).with_name("check-jsonschema")
    )
    assert Path(checker).exists(), "check-jsonschema is a dev dependency"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
