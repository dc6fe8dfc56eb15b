"""protocol.strictjson: one reading of signed bytes, never a RecursionError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.strictjson import MAX_DEPTH, Defect, StrictJsonError, loads

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=300)
@given(value=json_values, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_agrees_with_json_loads_on_ordinary_documents(
    value: Any, indent: int | None, ascii_only: bool
) -> None:
    raw = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    assert loads(raw) == json.loads(raw)


@settings(max_examples=300)
@given(raw=st.binary(max_size=200) | st.text(alphabet='[]{}",:\\0a ', max_size=80).map(str.encode))
def test_any_bytes_give_a_value_or_a_strict_json_error(raw: bytes) -> None:
    # The one error type callers map to a wire code; nothing else may escape.
    with contextlib.suppress(StrictJsonError):
        loads(raw)


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        (b'{"a":1,"a":2}', Defect.DUPLICATE_KEY),
        (b'[{"cells":[],"x":{"k":1,"k":1}}]', Defect.DUPLICATE_KEY),
        (b'{"a":1,"\\u0061":2}', Defect.DUPLICATE_KEY),  # the same key, spelled with an escape
        (b"[" * 100_000 + b"]" * 100_000, Defect.DEPTH),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, Defect.DEPTH),
        (b"[" * 100_000, Defect.SYNTAX),  # unclosed: refused before the parser recurses
        (b"[NaN]", Defect.NON_FINITE),
        (b"[-Infinity]", Defect.NON_FINITE),
        (b"[1e400]", Defect.NON_FINITE),
        (b'["\\ud800"]', Defect.LONE_SURROGATE),
        (b'{"\\udfff":1}', Defect.LONE_SURROGATE),
        (b'["\\udc00\\ud800"]', Defect.LONE_SURROGATE),  # reversed pair
        (b"\xff", Defect.ENCODING),
        (b'["\xed\xa0\x80"]', Defect.ENCODING),  # a surrogate in raw UTF-8
        (b"\xef\xbb\xbf{}", Defect.SYNTAX),  # byte order mark
        (b"[1,]", Defect.SYNTAX),
        (b"[" + b"9" * 5000 + b"]", Defect.SYNTAX),  # over int()'s digit limit
    ],
)
def test_defects(raw: bytes, defect: Defect) -> None:
    with pytest.raises(StrictJsonError) as caught:
        loads(raw)
    assert caught.value.defect == defect


def test_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert _depth(loads(at_limit)) == MAX_DEPTH
    with pytest.raises(StrictJsonError):
        loads(b"[" + at_limit + b"]")
    # Brackets and escaped quotes inside strings are not structure.
    text = json.dumps({"hoster": '[[[[ "]]]] \\ {{{', "n": [[1]]}).encode()
    assert loads(text)["hoster"] == '[[[[ "]]]] \\ {{{'


def test_valid_surrogate_pairs_pass() -> None:
    assert loads(b'["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert loads(b'["\\\\ud800"]') == ["\\ud800"]  # an escaped backslash, not an escape
