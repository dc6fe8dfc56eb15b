"""Text forms of a vPDQ video hash found in the field, parsed to and written from frames.

- ``lines``: Meta's reference tool (``vpdq-hash-video``, the files under
  ``../shared/vectors/vpdq/``): one frame a line, ``frame_number,quality,pdq_hex,timestamp``
  with the timestamp in seconds to 3 decimals, e.g. ``0,100,dadb99...f07c,0.000``.
- ``pytx``: the signal string of python-threatexchange's ``VideoVPDQSignal`` (signal type
  ``vpdq`` in HMA, ThreatExchange indicator type ``HASH_VIDEO_VPDQ``): a JSON array of
  ``"pdq_hex,quality,timestamp"`` strings. It carries no frame numbers; frames are numbered by
  their position. pytx writes the timestamp with 3 *significant* digits (``1.23e+03``); this
  module reads that and writes 3 decimals, which pytx reads too. An empty string is no frames,
  as in pytx.
- ``pytx-legacy`` (read only): pytx's older JSON object ``{"<frame>": {"quality": q, "hash":
  h, "timestamp": t}}``, ``h`` either 64 hex digits or ``{"w": [16 words]}`` (PDQ's Hash256,
  word 15 first in hex, as its ``format()``).

Every defect raises ``VpdqTextError`` (a ValueError) naming the line or item; nothing else
escapes for any input text.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from node.matching.vpdq import Frame, FrameTuple

MAX_TIMESTAMP = 1e9  # seconds; also keeps every written timestamp short
HASH256_WORDS = 16
_PDQ = re.compile(r"[0-9a-fA-F]{64}")
_INT = re.compile(r"[0-9]{1,18}")
_QUALITY = re.compile(r"[0-9]{1,3}")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?")


class VpdqTextError(ValueError):
    """A vPDQ hash text that is not well formed (the message says where and why)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number


def _frame(number: Any, timestamp: Any, pdq: Any, quality: Any, where: str) -> Frame:
    """Check one frame's typed values; ``where`` names its place in the input."""
    if not _is_int(number) or number < 0:
        raise VpdqTextError(f"{where}: frame number must be an integer >= 0, got {number!r}")
    if not _is_int(quality) or not 0 <= quality <= 100:
        raise VpdqTextError(f"{where}: quality must be an integer 0..100, got {quality!r}")
    if not isinstance(pdq, str) or not _PDQ.fullmatch(pdq):
        raise VpdqTextError(f"{where}: PDQ must be 64 hex digits, got {pdq!r}")
    finite = isinstance(timestamp, float) and math.isfinite(timestamp)
    if not (_is_int(timestamp) or finite):
        raise VpdqTextError(f"{where}: timestamp must be a finite number, got {timestamp!r}")
    if not 0 <= timestamp < MAX_TIMESTAMP:
        raise VpdqTextError(f"{where}: timestamp must be 0 <= t < {MAX_TIMESTAMP:g} s")
    return Frame(int(number), float(timestamp), pdq.lower(), int(quality))


def _int(text: str, pattern: re.Pattern[str], what: str, where: str) -> int:
    # ASCII digits only: int() would also take "1_0", "+1", " 1" and non-Latin digits.
    if not pattern.fullmatch(text):
        raise VpdqTextError(f"{where}: {what} must be decimal digits, got {text!r}")
    return int(text)


def _seconds(text: str, where: str) -> float:
    # float() would also take "nan", "inf", "1_0" and surrounding blanks.
    if not _DECIMAL.fullmatch(text):
        raise VpdqTextError(f"{where}: timestamp must be a decimal number, got {text!r}")
    return float(text)


def _increasing(frames: list[Frame]) -> list[Frame]:
    for before, after in itertools.pairwise(frames):
        if after.number <= before.number:
            raise VpdqTextError(
                f"frame numbers must increase: {after.number} follows {before.number}"
            )
    return frames


# ------------------------------------------------------------------ lines (Meta's tool)


def parse_lines(text: str) -> list[Frame]:
    """``frame,quality,pdq,timestamp`` lines (blank lines and CR-LF endings allowed)."""
    frames: list[Frame] = []
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        where = f"line {n}"
        fields = line.split(",")
        if len(fields) != 4:
            raise VpdqTextError(
                f"{where}: expected frame,quality,pdq,timestamp (4 fields), got {len(fields)}"
            )
        number = _int(fields[0], _INT, "frame number", where)
        quality = _int(fields[1], _QUALITY, "quality", where)
        frames.append(_frame(number, _seconds(fields[3], where), fields[2], quality, where))
    return _increasing(frames)


def format_lines(frames: Iterable[FrameTuple]) -> str:
    """The ``lines`` form (one frame a line, newline-terminated); checks every frame."""
    checked = [_frame(*frame, f"frame {n}") for n, frame in enumerate(frames)]
    _increasing(checked)
    return "".join(f"{f.number},{f.quality},{f.pdq},{f.timestamp:.3f}\n" for f in checked)


# ------------------------------------------------------------------ pytx / HMA signal


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:  # deeply nested brackets
        raise VpdqTextError("vPDQ JSON is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and integers of too many digits
        raise VpdqTextError(f"vPDQ signal is not valid JSON: {exc}") from exc


def parse_pytx(text: str) -> list[Frame]:
    """pytx's ``VideoVPDQSignal`` string: JSON array of ``"pdq,quality,timestamp"``."""
    if not text.strip():
        return []  # pytx reads an empty signal as no frames
    data = _json(text)
    if not isinstance(data, list):
        raise VpdqTextError("pytx vPDQ signal must be a JSON array of strings")
    frames = []
    for n, item in enumerate(data):
        where = f"item {n}"
        if not isinstance(item, str):
            raise VpdqTextError(f'{where}: expected a "pdq,quality,timestamp" string')
        fields = item.split(",")
        if len(fields) != 3:
            raise VpdqTextError(f"{where}: expected pdq,quality,timestamp, got {item!r}")
        quality = _int(fields[1], _QUALITY, "quality", where)
        frames.append(_frame(n, _seconds(fields[2], where), fields[0], quality, where))
    return frames


def format_pytx(frames: Iterable[FrameTuple]) -> str:
    """pytx's signal string (frame numbers are not part of it: only order is kept)."""
    items = []
    for n, (number, timestamp, pdq, quality) in enumerate(frames):
        f = _frame(number, timestamp, pdq, quality, f"frame {n}")
        items.append(f"{f.pdq},{f.quality},{f.timestamp:.3f}")
    return json.dumps(items)


def _hash256(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    words = value.get("w") if isinstance(value, dict) else None
    if (
        not isinstance(words, list)
        or len(words) != HASH256_WORDS
        or any(not _is_int(w) or not 0 <= w <= 0xFFFF for w in words)
    ):
        raise VpdqTextError(f'{where}: hash must be 64 hex digits or {{"w": [16 words]}}')
    return "".join(f"{w:04x}" for w in reversed(words))


def parse_pytx_legacy(text: str) -> list[Frame]:
    """pytx's older object form, frames in frame-number order."""
    data = _json(text)
    if not isinstance(data, dict):
        raise VpdqTextError("legacy vPDQ signal must be a JSON object keyed by frame number")
    frames = []
    for key, value in data.items():
        where = f"frame {key!r}"
        number = _int(key, _INT, "frame number", where)
        if not isinstance(value, dict) or not {"quality", "hash", "timestamp"} <= value.keys():
            raise VpdqTextError(f"{where}: needs quality, hash and timestamp")
        pdq = _hash256(value["hash"], where)
        frames.append(_frame(number, value["timestamp"], pdq, value["quality"], where))
    frames.sort(key=lambda f: f.number)
    return _increasing(frames)  # duplicate keys ("1" and "01") are refused here


# ------------------------------------------------------------------ any of them


def parse(text: str) -> list[Frame]:
    """Any of the three forms, told apart by the first character: ``[`` pytx, ``{`` legacy,
    else lines. An empty text is no frames."""
    head = text.lstrip()[:1]
    if head == "[":
        return parse_pytx(text)
    if head == "{":
        return parse_pytx_legacy(text)
    return parse_lines(text)
