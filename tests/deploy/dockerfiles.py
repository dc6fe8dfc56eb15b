"""A small Dockerfile reader: stages, what each stage inherits, the directories its RUN lines
create and give to a user, its COPY sources, ENV and USER; enough to check a compose file's
mounts and an image's file list without a Docker engine. It reads what our Dockerfiles use
(FROM ... AS, RUN with `&&`, `install -d`, `mkdir`, `chown`, `useradd`, COPY [--from] [--chown],
ENV k=v, USER, WORKDIR) and refuses what it does not understand."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_DIRECTIVE = re.compile(r"^#\s*\w+\s*=")


@dataclass(frozen=True)
class Dir:
    owner: str  # uid (or user name) as written; "0" for root
    mode: int | None


@dataclass
class Copy:
    sources: list[str]
    dest: str
    from_stage: str | None  # a stage name or an image reference; None = the build context
    chown: str | None


@dataclass
class Stage:
    name: str
    base: str  # an earlier stage's name or an image reference
    external_base: bool
    env: dict[str, str] = field(default_factory=dict)
    user: str = "0"
    workdir: str = "/"
    dirs: dict[str, Dir] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # name -> uid made by useradd
    copies: list[Copy] = field(default_factory=list)
    cmd: list[str] | None = None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def uid(self) -> str:
        user = self.user.split(":")[0]
        return self.users.get(user, "0" if user == "root" else user)


def logical_lines(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            if _DIRECTIVE.match(stripped) and not out and not pending:
                raise ValueError(f"parser directive not supported: {stripped}")
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    if pending:
        raise ValueError("Dockerfile ends inside a continuation line")
    return out


def _env_pairs(arguments: str) -> dict[str, str]:
    words = shlex.split(arguments)
    if words and "=" not in words[0]:  # legacy `ENV key value`
        return {words[0]: " ".join(words[1:])}
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"ENV {arguments!r}: {word!r} is not key=value")
        pairs[key] = value
    return pairs


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def _run(stage: Stage, arguments: str) -> None:
    """Record the directories, owners and users a RUN line makes."""
    for command in re.split(r"\s*(?:&&|;)\s*", arguments):
        words = shlex.split(command)
        if not words:
            continue
        program, rest = words[0], words[1:]
        if program == "install" and "-d" in rest:
            owner, mode, paths = "0", None, []
            i = 0
            while i < len(rest):
                word = rest[i]
                if word in ("-o", "-g", "-m"):
                    value = rest[i + 1]
                    if word == "-o":
                        owner = stage.users.get(value, value)
                    elif word == "-m":
                        mode = int(value, 8)
                    i += 2
                    continue
                if not word.startswith("-"):
                    paths.append(word)
                i += 1
            for path in paths:
                stage.dirs[path.rstrip("/")] = Dir(owner, mode)
        elif program == "mkdir":
            for path in (w for w in rest if not w.startswith("-")):
                stage.dirs.setdefault(path.rstrip("/"), Dir("0", None))
        elif program == "chown":
            args = [w for w in rest if not w.startswith("-")]
            owner = args[0].split(":")[0]
            for path in args[1:]:
                old = stage.dirs.get(path.rstrip("/"), Dir("0", None))
                stage.dirs[path.rstrip("/")] = Dir(stage.users.get(owner, owner), old.mode)
        elif program == "useradd":
            uid = rest[rest.index("--uid") + 1] if "--uid" in rest else None
            name = rest[-1]
            if uid is None:
                raise ValueError(f"useradd without --uid: {command}")
            stage.users[name] = uid


def parse(text: str) -> dict[str, Stage]:
    """Stages by name (an unnamed stage gets its index), in file order."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for instruction, arguments in logical_lines(text):
        if instruction == "FROM":
            words = arguments.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = words[0]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            if base in stages:
                parent = stages[base]
                current = Stage(
                    name,
                    base,
                    False,
                    env=dict(parent.env),
                    user=parent.user,
                    workdir=parent.workdir,
                    dirs=dict(parent.dirs),
                    users=dict(parent.users),
                    copies=list(parent.copies),
                    cmd=parent.cmd,
                )
            else:
                current = Stage(name, base, True)
            stages[name] = current
            continue
        if current is None:
            if instruction == "ARG":
                continue
            raise ValueError(f"{instruction} before FROM")
        current.instructions.append((instruction, arguments))
        if instruction == "ENV":
            for key, value in _env_pairs(arguments).items():
                current.env[key] = _expand(value, current.env)
        elif instruction == "USER":
            current.user = arguments.strip()
        elif instruction == "WORKDIR":
            current.workdir = arguments.strip()
            # WORKDIR creates the directory (as root) when it is missing.
            current.dirs.setdefault(current.workdir, Dir("0", None))
        elif instruction == "RUN":
            _run(current, arguments)
        elif instruction in ("COPY", "ADD"):
            words = shlex.split(arguments)
            options = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--")}
            paths = [w for w in words if not w.startswith("--")]
            if instruction == "ADD" or paths[0].startswith("["):
                raise ValueError(f"unsupported {instruction} {arguments}")
            current.copies.append(
                Copy(paths[:-1], paths[-1], options.get("--from"), options.get("--chown"))
            )
        elif instruction == "CMD":
            exec_form = arguments.startswith("[")
            current.cmd = json.loads(arguments) if exec_form else shlex.split(arguments)
        elif instruction not in ("EXPOSE", "HEALTHCHECK", "ARG", "LABEL", "ENTRYPOINT"):
            raise ValueError(f"unsupported instruction {instruction}")
    return stages


def load(path: Path) -> dict[str, Stage]:
    return parse(path.read_text(encoding="utf-8"))


def default_target(stages: dict[str, Stage]) -> str:
    return list(stages)[-1]


def closure(stages: dict[str, Stage], target: str) -> list[str]:
    """The stages ``target`` needs (itself, its bases, COPY --from stages), BuildKit's order."""
    seen: list[str] = []

    def visit(name: str) -> None:
        if name in seen or name not in stages:
            return
        stage = stages[name]
        visit(stage.base)
        for copy in stage.copies:
            if copy.from_stage:
                visit(copy.from_stage)
        seen.append(name)

    visit(target)
    return seen


def external_images(stages: dict[str, Stage], target: str) -> set[str]:
    """Registry images building ``target`` pulls: external bases and COPY --from images."""
    images = set()
    for name in closure(stages, target):
        stage = stages[name]
        if stage.external_base:
            images.add(stage.base)
        for copy in stage.copies:
            if copy.from_stage and copy.from_stage not in stages:
                images.add(copy.from_stage)
    return images
