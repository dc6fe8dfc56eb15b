"""vPDQ hash texts (node.matching.vpdq_text): Meta's line format, pytx/HMA's signal string and
pytx's legacy object: parsing, writing, round trips, and a fuzz in which nothing but
VpdqTextError may escape."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.matching.vpdq import Frame
from node.matching.vpdq_text import (
    VpdqTextError,
    format_lines,
    format_pytx,
    parse,
    parse_lines,
    parse_pytx,
    parse_pytx_legacy,
)

A = "dadb999c25266273529cadac89cb52c22324ad3bce99726c38668d93c799f07c"
B = "e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c"

frame_lists = st.lists(
    st.builds(
        Frame,
        number=st.just(0),
        timestamp=st.integers(0, 10**9 - 1).map(lambda ms: ms / 1000),
        pdq=st.integers(0, 2**256 - 1).map(lambda v: f"{v:064x}"),
        quality=st.integers(0, 100),
    ),
    max_size=30,
).map(lambda fs: [f._replace(number=3 * n + 1) for n, f in enumerate(fs)])


def test_lines_as_meta_writes_them() -> None:
    text = f"0,100,{A},0.000\n1,47,{B.upper()},0.033\r\n\n2,0,{A},1234.500\n"
    assert parse_lines(text) == [
        Frame(0, 0.0, A, 100),
        Frame(1, 0.033, B, 47),
        Frame(2, 1234.5, A, 0),
    ]
    assert format_lines(parse_lines(text)) == f"0,100,{A},0.000\n1,47,{B},0.033\n2,0,{A},1234.500\n"
    assert parse_lines("") == parse_lines("\n\n") == []


def test_pytx_signal_as_pytx_writes_it() -> None:
    # pytx formats timestamps with 3 significant digits: 1234.5 s becomes "1.23e+03".
    text = json.dumps([f"{A},100,0.0", f"{B},61,0.033", f"{A},90,1.23e+03"])
    assert parse_pytx(text) == [
        Frame(0, 0.0, A, 100),
        Frame(1, 0.033, B, 61),
        Frame(2, 1230.0, A, 90),
    ]
    assert parse_pytx("") == parse_pytx("  ") == parse("") == []
    written = format_pytx([Frame(7, 1234.5, A, 100)])
    assert json.loads(written) == [f"{A},100,1234.500"]


def test_pytx_legacy_object_with_hex_and_word_hashes() -> None:
    words = [0x0001] + [0] * 14 + [0xABCD]  # Hash256 word 15 is written first
    text = json.dumps(
        {
            "30": {"quality": 100, "hash": {"w": words}, "timestamp": 1.0},
            "0": {"quality": 55, "hash": A, "timestamp": 0},
        }
    )
    assert parse_pytx_legacy(text) == [
        Frame(0, 0.0, A, 55),
        Frame(30, 1.0, "abcd" + "0" * 56 + "0001", 100),
    ]
    assert parse(text) == parse_pytx_legacy(text)


def test_parse_tells_the_forms_apart() -> None:
    frames = [Frame(0, 0.0, A, 100), Frame(5, 0.2, B, 80)]
    assert parse(format_lines(frames)) == frames
    assert parse("  \n" + format_pytx(frames)) == [
        f._replace(number=n) for n, f in enumerate(frames)
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"0,100,{A}", r"line 1: expected frame,quality,pdq,timestamp \(4 fields\), got 3"),
        (f"0,100,{A},0.0,extra", "got 5"),
        (f"0,100,{A[:-1]},0.0", "line 1: PDQ must be 64 hex digits"),
        (f"0,100,{A[:-1]}g,0.0", "PDQ must be 64 hex digits"),
        (f"0,101,{A},0.0", "quality must be an integer 0..100"),
        (f"0,-1,{A},0.0", "quality must be decimal digits"),
        (f"-1,100,{A},0.0", "frame number must be decimal digits"),
        (f"1_0,100,{A},0.0", "frame number must be decimal digits"),
        (f"\u0661,100,{A},0.0", "frame number must be decimal digits"),  # Arabic-Indic 1
        (f" 0,100,{A},0.0", "frame number must be decimal digits"),
        (f"0,100,{A},nan", "timestamp must be a decimal number"),
        (f"0,100,{A},inf", "timestamp must be a decimal number"),
        (f"0,100,{A},-0.5", "timestamp must be a decimal number"),
        (f"0,100,{A},1e999", "timestamp must be a finite number"),
        (f"0,100,{A},2e9", "timestamp must be 0 <= t < 1e"),
        (f"0,100,{A},0.0\n\n0,100,{B},0.1", "frame numbers must increase: 0 follows 0"),
        (f"5,100,{A},0.0\n2,100,{B},0.1", "2 follows 5"),
    ],
)
def test_bad_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(VpdqTextError, match=message):
        parse_lines(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[", "not valid JSON"),
        ("[" * 100_000, "nested too deeply|not valid JSON"),
        ('{"a": 1}', "legacy vPDQ signal|frame number must be decimal digits"),
        ('"x"', "4 fields"),  # not "[" or "{": read as lines, not JSON
        ("[1]", r"item 0: expected a \"pdq,quality,timestamp\" string"),
        (json.dumps([f"{A},100"]), "item 0: expected pdq,quality,timestamp"),
        (json.dumps([f"{A},100,0.0", f"{A},x,0.0"]), "item 1: quality must be decimal"),
        ("[" + "1" * 5000 + "]", "not valid JSON"),  # int of too many digits
        ('{"0": [1]}', "needs quality, hash and timestamp"),
        ('{"0": {"quality": true, "hash": "' + A + '", "timestamp": 0}}', "quality must be"),
        ('{"0": {"quality": 1, "hash": {"w": [1]}, "timestamp": 0}}', "16 words"),
        ('{"0": {"quality": 1, "hash": "' + A + '", "timestamp": "0"}}', "timestamp must be"),
        ('{"0": {"quality": 1, "hash": 5, "timestamp": 0}}', "hash must be"),
        (
            '{"1": {"quality": 1, "hash": "' + A + '", "timestamp": 0},'
            ' "01": {"quality": 1, "hash": "' + A + '", "timestamp": 0}}',
            "frame numbers must increase",
        ),
    ],
)
def test_bad_signals_are_named(text: str, message: str) -> None:
    with pytest.raises(VpdqTextError, match=message):
        parse(text)


def test_writing_checks_the_frames() -> None:
    with pytest.raises(VpdqTextError, match="frame 1: quality"):
        format_lines([Frame(0, 0.0, A, 100), Frame(1, 0.0, A, 101)])
    with pytest.raises(VpdqTextError, match="frame numbers must increase"):
        format_lines([Frame(1, 0.0, A, 100), Frame(1, 0.0, A, 100)])
    with pytest.raises(VpdqTextError, match="timestamp"):
        format_pytx([Frame(0, 10**400, A, 100)])
    with pytest.raises(VpdqTextError, match="PDQ"):
        format_pytx([Frame(0, 0.0, "", 100)])


@given(frame_lists)
def test_lines_round_trip(frames: list[Frame]) -> None:
    text = format_lines(frames)
    assert parse_lines(text) == frames
    assert format_lines(parse_lines(text)) == text


@given(frame_lists)
def test_pytx_round_trip(frames: list[Frame]) -> None:
    text = format_pytx(frames)
    assert parse_pytx(text) == [f._replace(number=n) for n, f in enumerate(frames)]
    assert format_pytx(parse_pytx(text)) == text


def _mutations(seed: int) -> str:
    """A valid text in one of the forms with a few characters changed, cut or repeated."""
    rng = random.Random(seed)
    frames = [Frame(n, n / 3, f"{rng.getrandbits(256):064x}", rng.randrange(101)) for n in range(3)]
    text = rng.choice([format_lines, format_pytx])(frames)
    chars = list(text)
    for _ in range(rng.randrange(1, 6)):
        at = rng.randrange(len(chars))
        op = rng.randrange(3)
        if op == 0:
            chars[at] = rng.choice(',.[]{}"\\:-+eE0f \n\r\x00\u0661')
        elif op == 1:
            del chars[at]
        else:
            chars.insert(at, chars[at] * rng.randrange(1, 4))
    return "".join(chars)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400)
@given(
    st.one_of(
        st.text(max_size=300),
        st.integers(0, 2**32).map(_mutations),
        json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    )
)
def test_fuzz_only_vpdq_text_errors(text: str) -> None:
    try:
        frames = parse(text)
    except VpdqTextError:
        return
    # Whatever parses is well formed and survives being written back.
    for f in frames:
        assert len(f.pdq) == 64 and 0 <= f.quality <= 100 and f.timestamp >= 0
    rounded = [f._replace(timestamp=round(f.timestamp, 3)) for f in frames]
    assert parse_lines(format_lines(frames)) == rounded
