"""docker-compose.yml read as Compose reads it (short and long syntax) for the deploy tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import dockerfiles

REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


@dataclass(frozen=True)
class Mount:
    kind: str  # "volume" or "bind"
    source: str
    target: str
    read_only: bool


def names(entries: list[Any] | dict[str, Any] | None) -> set[str]:
    """Short or long syntax (secrets, configs, networks) -> the referenced names."""
    if entries is None:
        return set()
    if isinstance(entries, dict):
        return set(entries)
    return {e if isinstance(e, str) else e["source"] for e in entries}


def mounts(service: dict[str, Any]) -> list[Mount]:
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
            kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        else:
            source, target = volume["source"], volume["target"]
            read_only = bool(volume.get("read_only", False))
            kind = volume["type"]
        out.append(Mount(kind, source, target, read_only))
    return out


def image_stage(service: dict[str, Any]) -> dockerfiles.Stage | None:
    """The Dockerfile stage a service's image is built from (None for registry images)."""
    build = service.get("build")
    if build is None:
        return None
    stages = dockerfiles.load(REPO / build["context"] / build.get("dockerfile", "Dockerfile"))
    return stages[build.get("target") or dockerfiles.default_target(stages)]


def dependencies(name: str) -> set[str]:
    """Every service ``name`` waits for, directly or through others."""
    seen: set[str] = set()
    todo = list(SERVICES[name].get("depends_on", {}))
    while todo:
        other = todo.pop()
        if other not in seen:
            seen.add(other)
            todo.extend(SERVICES[other].get("depends_on", {}))
    return seen


def reachable(a: str, b: str) -> bool:
    """Whether services ``a`` and ``b`` share a network."""
    return bool(names(SERVICES[a].get("networks")) & names(SERVICES[b].get("networks")))
