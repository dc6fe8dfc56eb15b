"""Strict JSON for signed messages: one reading of the bytes for every verifier.

``json.loads`` lets the last of two equal keys win, reads ``NaN``/``Infinity``, turns ``1e400``
into infinity, keeps lone UTF-16 surrogates and recurses once per nesting level (100k levels
raise RecursionError). A verifier whose parser keeps the *first* duplicate would read other
numbers from the same signed bytes, so every one of these is refused here.

Depth is checked before parsing by a linear scan (strings removed, brackets counted), so the
parser below never recurses more than ``MAX_DEPTH`` levels.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from typing import Any

MAX_DEPTH = 32


class Defect(StrEnum):
    """Why a document was refused (the caller maps all of them to one wire code)."""

    ENCODING = "encoding"
    SYNTAX = "syntax"
    DEPTH = "depth"
    DUPLICATE_KEY = "duplicate_key"
    NON_FINITE = "non_finite"
    LONE_SURROGATE = "lone_surrogate"


class StrictJsonError(ValueError):
    def __init__(self, defect: Defect, message: str) -> None:
        super().__init__(message)
        self.defect = defect


_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN_CLOSE = bytes.maketrans(b"{}", b"[]")
# An escaped UTF-16 surrogate; the only way one can enter a str (raw UTF-8 refuses them).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _outside_strings(raw: bytes) -> bytes:
    """The bytes of ``raw`` outside JSON strings, by C-speed bytes operations only.

    Drop escaped backslashes first, then escaped quotes: every quote left delimits a string,
    so the pieces between them alternate outside/inside. (In invalid JSON the split may be off;
    such text is refused by the depth check or by the parser, never accepted.)
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


def _check_depth(raw: bytes, max_depth: int) -> None:
    brackets = _outside_strings(raw).translate(_OPEN_CLOSE, _NOT_BRACKET)
    # Each pass removes every innermost pair, so a balanced document of depth d is empty
    # after d passes. Anything left is deeper, or unbalanced: not JSON, and "[[[[..." unclosed
    # would still make json.loads recurse once per bracket before it finds the end.
    for _ in range(max_depth):
        if not brackets:
            return
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            raise StrictJsonError(Defect.SYNTAX, "not JSON: unbalanced brackets")
        brackets = shorter
    if brackets:
        raise StrictJsonError(Defect.DEPTH, f"JSON nesting is deeper than {max_depth}")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise StrictJsonError(Defect.DUPLICATE_KEY, f"duplicate object key {duplicate!r}")
    return result


def _constant(name: str) -> Any:
    raise StrictJsonError(Defect.NON_FINITE, f"{name} is not JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(Defect.NON_FINITE, f"number {text[:40]} is out of range")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    # Depth is bounded by MAX_DEPTH, so this recursion is bounded too.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def loads(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse UTF-8 JSON bytes strictly; raise StrictJsonError (a ValueError) on any defect."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJsonError(Defect.ENCODING, f"not UTF-8: {exc.reason}") from None
    _check_depth(raw, max_depth)
    try:
        value = json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float
        )
    except StrictJsonError:
        raise
    except ValueError as exc:  # JSONDecodeError, and int() over its digit limit
        raise StrictJsonError(Defect.SYNTAX, f"not JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        raise StrictJsonError(Defect.LONE_SURROGATE, "a string holds a lone UTF-16 surrogate")
    return value
