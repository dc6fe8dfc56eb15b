"""Seed lists from a file (`libra node crawl --seeds-file`): one URL per line.

Lines are stripped; blank lines and lines whose first non-blank character is ``#`` are
ignored (a ``#`` inside a URL is its fragment, so comments take a whole line). Every other
line must be an absolute http(s) URL with a host, as the crawler accepts it
(node.crawl.links.normalize_url); otherwise the whole file is refused, naming the lines, so
that a typo never silently shrinks a crawl.
"""

from __future__ import annotations

from pathlib import Path

from node.crawl.links import normalize_url

# Bad lines named in the error; the rest are counted.
MAX_REPORTED = 10


class SeedsFileError(Exception):
    """The seeds file cannot be read, holds no URL, or holds lines that are not URLs."""


def parse_seeds(text: str, source: str = "seeds") -> list[str]:
    """The seed URLs of ``text`` in file order (duplicates kept: the crawler drops them)."""
    seeds: list[str] = []
    bad: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if normalize_url(line) is None:
            bad.append(f"line {number}: {line[:100]!r}")
            continue
        seeds.append(line)
    if bad:
        shown = "; ".join(bad[:MAX_REPORTED])
        more = f"; and {len(bad) - MAX_REPORTED} more" if len(bad) > MAX_REPORTED else ""
        raise SeedsFileError(f"{source}: {len(bad)} line(s) are not http(s) URLs: {shown}{more}")
    if not seeds:
        raise SeedsFileError(f"{source}: no seed URL in it (only blank lines and # comments)")
    return seeds


def read_seeds_file(path: Path) -> list[str]:
    """The seed URLs of the file at ``path`` (UTF-8); SeedsFileError with the reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedsFileError(f"cannot read the seeds file {path}: {exc}") from exc
    return parse_seeds(text, str(path))
