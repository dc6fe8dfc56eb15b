"""Bounded, incremental decoding of a response's ``Content-Encoding``.

The function asks for ``Accept-Encoding: identity``, but a hostile server may compress anyway:
1.6 KB of brotli or nested gzip inflate to 1 GiB. So the raw bytes are read as they arrive and
decoded here in bounded steps: no single call produces more than about ``STEP`` bytes, each stage
holds at most one step of pending input, and the caller counts decoded bytes against its cap
after every step (and yields to the event loop between steps). Encodings that cannot be decoded
in bounded steps are refused rather than decoded in one call.

Supported: ``gzip`` (and ``x-gzip``), ``deflate`` (zlib or raw), ``br`` (brotli >= 1.2, whose
``output_buffer_limit`` bounds each step), ``identity``; chains of at most ``MAX_CHAIN`` of them
("gzip, br": decoded right to left). Anything else, ``zstd`` included, is UnsupportedEncoding.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from .errors import FetchFailed, UnsupportedEncoding

# Largest output of one decompression call (brotli may overshoot by its last block, < 64 KiB).
STEP = 64 * 1024
# Longest chain of non-identity encodings accepted; real servers never send more than one.
MAX_CHAIN = 2
# Largest brotli sliding window (lgwin 24; large-window brotli is not enabled by the decoder).
BROTLI_WINDOW = 16 * 1024 * 1024

try:  # brotli is a declared dependency; an older build without output limits is refused.
    import brotli as _brotli  # type: ignore[import-untyped]

    _BROTLI_BOUNDED = hasattr(_brotli.Decompressor(), "can_accept_more_data")
except ImportError:  # pragma: no cover - the dependency is installed in every supported setup
    _brotli = None
    _BROTLI_BOUNDED = False


_INVALID = "the body is not valid for its Content-Encoding"


class ContentDecodingFailed(FetchFailed):
    """The body does not decode under its declared Content-Encoding (a broken or lying server)."""


class Stage(Protocol):
    def push(self, data: bytes) -> None:
        """Queue encoded input (the caller pushes only after ``pull`` returned empty)."""

    def pull(self, limit: int) -> bytes:
        """Up to about ``limit`` decoded bytes; empty when more input is needed."""


class _Zlib:
    """gzip (wbits 31; concatenated members are followed) or deflate (zlib wrapper or raw)."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._wbits = 16 + zlib.MAX_WBITS if gzip else 0  # deflate: decided by the first bytes
        self._inflater = zlib.decompressobj(self._wbits) if gzip else None
        self._pending = b""
        self._done = False
        self._more = False  # the last call filled its limit: output may still be buffered

    def push(self, data: bytes) -> None:
        if not self._done:
            self._pending += data

    def pull(self, limit: int) -> bytes:
        if self._done or not (self._pending or self._more):
            return b""
        if self._inflater is None:
            if len(self._pending) < 2:
                return b""  # the zlib header is two bytes
            # "deflate" in the wild is often raw deflate without the zlib wrapper (as in httpx):
            # a valid zlib header (method 8, check bits) decides.
            cmf, flg = self._pending[0], self._pending[1]
            wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._wbits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
            self._inflater = zlib.decompressobj(self._wbits)
        data, self._pending = self._pending, b""
        try:
            out = self._inflater.decompress(data, limit)
        except zlib.error:
            raise ContentDecodingFailed(_INVALID) from None
        self._more = len(out) >= limit
        self._pending = self._inflater.unconsumed_tail
        if self._inflater.eof:
            rest = self._inflater.unused_data
            if self._gzip and rest:
                self._inflater = zlib.decompressobj(self._wbits)  # next gzip member
                self._pending = rest + self._pending
            else:
                self._done = True  # trailing bytes after a deflate stream are ignored
        return out


class _Brotli:
    def __init__(self) -> None:
        assert _brotli is not None
        self._decoder: Any = _brotli.Decompressor()
        self._pending = b""

    def push(self, data: bytes) -> None:
        self._pending += data

    def pull(self, limit: int) -> bytes:
        try:
            if self._decoder.is_finished():
                return b""
            data = b""
            if self._pending and self._decoder.can_accept_more_data():
                data, self._pending = self._pending, b""
            # Without new input too: a call that hit its output limit can leave decoded output
            # behind although can_accept_more_data() says True (brotli 1.2), so always ask;
            # an empty answer means the decoder needs more input.
            return bytes(self._decoder.process(data, output_buffer_limit=limit))
        except _brotli.error:
            raise ContentDecodingFailed(_INVALID) from None


def parse_encodings(values: Sequence[str]) -> list[str]:
    """The non-identity codings in the order they were applied; UnsupportedEncoding if any
    cannot be decoded in bounded steps, or the chain is longer than ``MAX_CHAIN``."""
    codings = [
        token.strip().lower()
        for value in values
        for token in value.split(",")
        if token.strip() and token.strip().lower() != "identity"
    ]
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate", "br") or (
            coding == "br" and not _BROTLI_BOUNDED
        ):
            raise UnsupportedEncoding(f"Content-Encoding {coding[:40]!r} is not supported")
    if len(codings) > MAX_CHAIN:
        raise UnsupportedEncoding(
            f"Content-Encoding chains longer than {MAX_CHAIN} are not supported"
        )
    return codings


def _stage(coding: str) -> Stage:
    if coding == "br":
        return _Brotli()
    return _Zlib(gzip=coding in ("gzip", "x-gzip"))


class Decoder:
    """Decodes a stream of raw chunks through the whole chain, one bounded step at a time."""

    def __init__(self, codings: Sequence[str], step: int = STEP) -> None:
        # The last coding applied is the first to undo.
        self._stages = [_stage(coding) for coding in reversed(codings)]
        self._step = step

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """Decoded pieces of ``raw``, each at most about ``step`` bytes. Iterate lazily: the
        caller checks its cap (and yields to the event loop) between pieces."""
        if not self._stages:
            for start in range(0, len(raw), self._step):
                yield raw[start : start + self._step]
            return
        self._stages[0].push(raw)
        yield from self._drain(0)

    def _drain(self, index: int) -> Iterator[bytes]:
        stage = self._stages[index]
        last = index == len(self._stages) - 1
        while out := stage.pull(self._step):
            if last:
                yield out
            else:
                # The next stage is emptied before this one makes more: pending input stays
                # bounded by one step per stage.
                self._stages[index + 1].push(out)
                yield from self._drain(index + 1)


def memory_bound(max_bytes: int) -> int:
    """Upper bound of the bytes one fetch holds (documented per request): the decoded body up
    to the cap, its final copy into ``bytes``, and each decoding stage's window, pending input,
    output step and one raw network chunk."""
    per_stage = BROTLI_WINDOW + 2 * STEP + 64 * 1024
    return 2 * max_bytes + MAX_CHAIN * per_stage


__all__ = [
    "MAX_CHAIN",
    "STEP",
    "ContentDecodingFailed",
    "Decoder",
    "memory_bound",
    "parse_encodings",
]
