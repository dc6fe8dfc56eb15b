"""Docker's .dockerignore rules, for checking the build context without a Docker engine.

A port of moby/patternmatcher and BuildKit's dockerignore reader: each line is a pattern
relative to the context root (cleaned, leading "/" dropped, "#" lines are comments); ``*`` and
``?`` never cross "/", ``**`` crosses any number of directories, ``[...]`` is a class, ``\\``
escapes; a pattern matches a path or any of its parent directories; ``!`` re-includes; the last
matching pattern wins. Unlike .gitignore, ``*.pyc`` matches only at the root.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool  # a "!" line: re-includes what it matches
    regex: re.Pattern[str]


def _compile(pattern: str) -> re.Pattern[str]:
    out = "^"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1  # "**/" is "**"
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f"bad pattern {pattern!r}: unclosed [")
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
            i = end
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def parse(text: str) -> list[Pattern]:
    patterns = []
    for raw in text.splitlines():
        if raw.startswith("#"):  # only a "#" in the first column starts a comment
            continue
        line = raw.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        cleaned = posixpath.normpath(line).lstrip("/")
        if cleaned in ("", "."):
            continue
        patterns.append(Pattern(cleaned, exclusion, _compile(cleaned)))
    return patterns


class DockerIgnore:
    def __init__(self, text: str) -> None:
        self.patterns = parse(text)

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (relative, "/"-separated) stays out of the context."""
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for pattern in self.patterns:
            if any(pattern.regex.match(p) for p in prefixes):
                result = not pattern.exclusion
        return result

    def _may_include_below(self, directory: str) -> bool:
        # An excluded directory is walked only when a "!" pattern could match inside it.
        depth = directory.count("/") + 1
        parts = directory.split("/")
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            components = pattern.text.split("/")
            if any("**" in c for c in components[:depth]):
                return True
            if len(components) > depth and all(
                _compile(c).match(p) for c, p in zip(components, parts, strict=False)
            ):
                return True
        return False

    def context_files(self, root: Path) -> Iterator[str]:
        """Every file `docker build` would send from ``root`` ("/"-separated, relative)."""
        for current, dirs, files in os.walk(root):
            base = Path(current).relative_to(root).as_posix()
            prefix = "" if base == "." else base + "/"
            dirs[:] = sorted(
                d
                for d in dirs
                if not self.excluded(prefix + d) or self._may_include_below(prefix + d)
            )
            for name in sorted(files):
                if not self.excluded(prefix + name):
                    yield prefix + name
