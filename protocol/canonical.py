"""RFC 8785 (JCS) canonical JSON: the exact bytes that are signed.

JSON numbers are IEEE doubles, so integers beyond 2^53 cannot travel safely as numbers; the
protocol sends them as decimal strings and this module refuses to emit them as numbers.
"""

from __future__ import annotations

from typing import Any

import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1


class UnsafeInteger(ValueError):
    """An integer outside the IEEE-754 safe range was about to be serialised as a number."""


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise UnsafeInteger(f"{path}: integer {value} exceeds 2^53; send it as a string")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise TypeError(f"{path}: {type(value).__name__} is not a JSON type")


def canonical_json(value: Any) -> bytes:
    """Serialise plain JSON data (dict/list/str/int/float/bool/None) to RFC 8785 bytes."""
    _check(value, "$")
    return bytes(rfc8785.dumps(value))
