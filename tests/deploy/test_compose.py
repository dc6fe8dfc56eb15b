"""docker-compose.yml, checked as `docker compose config` would and against our own rules:
services, builds, health checks, secrets from files only, isolated volumes and networks.
No Docker engine runs here; the checks parse the files."""

from __future__ import annotations

import importlib.util
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.config import load_settings as load_node_settings
from node.crypto_store import load_list_key
from node.keys import load_federation_key, load_signing_key
from protocol.keys import NodeKey
from worker_function.settings import load_settings as load_function_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
LIBRA = {"coordinator-migrate", "coordinator", "function-a", "function-b", "node-a", "node-b"}
NODES = ("node-a", "node-b")
FUNCTIONS = ("function-a", "function-b")
ONE_SHOT = {"coordinator-migrate"}
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|SEED|_KEY$", re.IGNORECASE)


def names(entries: list[Any] | dict[str, Any] | None) -> set[str]:
    """Short or long syntax (secrets, configs, networks) -> the referenced names."""
    if entries is None:
        return set()
    if isinstance(entries, dict):
        return set(entries)
    return {e if isinstance(e, str) else e["source"] for e in entries}


def named_volumes(service: dict[str, Any]) -> set[str]:
    out = set()
    for volume in service.get("volumes", []):
        source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
        assert not source.startswith(("/", ".")), f"bind mount {source}: use a named volume"
        out.add(source)
    return out


def test_the_services_of_the_issue_are_all_there() -> None:
    assert set(SERVICES) == LIBRA | {"postgres", "redis"}
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")


@pytest.mark.parametrize("name", sorted(LIBRA))
def test_libra_images_are_built_from_the_repo_as_non_root(name: str) -> None:
    build = SERVICES[name]["build"]
    dockerfile = REPO / build["context"] / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file(), dockerfile
    text = dockerfile.read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE)
    if "target" in build:
        assert build["target"] in stages
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and all(u.split(":")[0] not in ("0", "root") for u in users)
    service = SERVICES[name]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in SERVICES.items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        assert check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES
            expected = "service_completed_successfully" if dependency in ONE_SHOT else None
            assert condition["condition"] in (expected or "service_healthy",), (name, dependency)


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


def test_nodes_share_no_volume_secret_config_or_private_network() -> None:
    a, b = SERVICES["node-a"], SERVICES["node-b"]
    assert named_volumes(a) and not named_volumes(a) & named_volumes(b)
    assert not names(a.get("secrets")) & names(b.get("secrets"))
    assert not names(a.get("configs")) & names(b.get("configs"))
    assert names(a["networks"]) & names(b["networks"]) == {"federation"}
    declared = set(COMPOSE["volumes"])
    for service in SERVICES.values():
        assert named_volumes(service) <= declared
    for node in NODES:
        mounts = SERVICES[node]["volumes"]
        assert any(m.endswith("/var/lib/libra/node") for m in mounts)  # data and keys state
        assert any("lists" in m and m.endswith(":ro") for m in mounts)  # its own list volume


def test_networks_keep_each_role_to_what_it_needs() -> None:
    networks = {name: names(s.get("networks")) for name, s in SERVICES.items()}
    declared = COMPOSE["networks"]
    for name, joined in networks.items():
        assert joined and joined <= set(declared), name
    db_members = {name for name, joined in networks.items() if "coordinator-db" in joined}
    assert db_members == {"postgres", "coordinator", "coordinator-migrate"}
    assert declared["coordinator-db"]["internal"] is True
    for function in FUNCTIONS:
        # A function shares a network with its own node only, and never with the coordinator.
        peers = {
            other
            for other, joined in networks.items()
            if other != function and joined & networks[function]
        }
        assert peers == {function.replace("function", "node")}, (function, peers)
    assert {n for n, joined in networks.items() if "frontier-a" in joined} == {"redis", "node-a"}
    assert "ports" not in SERVICES["postgres"] and "ports" not in SERVICES["redis"]
    for published in SERVICES["coordinator"].get("ports", []):
        assert published.startswith("127.0.0.1:"), "the TLS proxy publishes, not the app"


@pytest.mark.parametrize("node", NODES)
def test_node_configs_match_the_compose_file(node: str) -> None:
    service = SERVICES[node]
    (config,) = service["configs"]
    assert config["target"] == "/etc/libra/node.toml"
    assert service.get("command") is None or "/etc/libra/node.toml" in service["command"]
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
    listen = settings.telemetry.metrics_listen
    assert listen is not None and listen.split(":")[-1] in " ".join(service["healthcheck"]["test"])
    if settings.crawl.frontier == "redis":
        assert settings.crawl.redis_url.startswith("redis://redis:")
        assert "frontier-a" in names(service["networks"])


def _make_secrets() -> Any:
    spec = importlib.util.spec_from_file_location("make_secrets", REPO / "deploy/make_secrets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_secrets_creates_every_file_compose_reads(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    made = _make_secrets().make(directory)
    wanted = {Path(s["file"]).name for s in COMPOSE["secrets"].values()}
    assert set(made) == wanted
    for name in wanted:
        mode = stat.S_IMODE((directory / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    before = {name: (directory / name).read_bytes() for name in wanted}
    assert _make_secrets().make(directory) == []  # never overwrites: no accidental rotation
    assert before == {name: (directory / name).read_bytes() for name in wanted}
    for node in ("a", "b"):
        load_signing_key(directory / f"node_{node}_signing_key")
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


def test_function_services_read_their_config_from_a_secret() -> None:
    for function in FUNCTIONS:
        command = SERVICES[function]["command"]
        path = command[command.index("--config") + 1]
        assert path.removeprefix("/run/secrets/") in names(SERVICES[function]["secrets"])
